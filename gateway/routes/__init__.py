"""One module per endpoint family; each builds its router from the services it is handed."""

from gateway.routes.health import health_router
from gateway.routes.inference import inference_router
from gateway.routes.models import models_router

__all__ = ["health_router", "inference_router", "models_router"]
