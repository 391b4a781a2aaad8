"""One module per endpoint family; each builds its router from the services it is handed."""

from gateway.routes.admin import admin_router
from gateway.routes.audio import audio_router
from gateway.routes.inference import inference_router
from gateway.routes.models import models_router
from gateway.routes.operations import operations_router

__all__ = ["admin_router", "audio_router", "inference_router", "models_router", "operations_router"]
