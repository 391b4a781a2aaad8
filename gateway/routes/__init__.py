"""One module per endpoint family; each builds its router from the services it is handed."""

from gateway.routes.admin import admin_router
from gateway.routes.anthropic import anthropic_router
from gateway.routes.inference import inference_endpoints, inference_router
from gateway.routes.models import models_router
from gateway.routes.operations import operations_router, profile_router
from gateway.routes.pooling import pooling_router
from gateway.routes.realtime import realtime_router
from gateway.routes.speech import speech_router
from gateway.routes.transcription import transcription_router

__all__ = [
    "admin_router",
    "anthropic_router",
    "inference_endpoints",
    "inference_router",
    "models_router",
    "operations_router",
    "pooling_router",
    "profile_router",
    "realtime_router",
    "speech_router",
    "transcription_router",
]
