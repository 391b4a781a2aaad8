"""Where requests go: the engines, and what the gateway knows about the models they serve."""

from gateway.upstreams.catalog import ModelCatalog
from gateway.upstreams.engine import EngineUpstream, engine_error

__all__ = ["EngineUpstream", "ModelCatalog", "engine_error"]
