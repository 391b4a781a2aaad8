"""Where requests go: the engines, and what the gateway knows about the models they serve."""

from gateway.upstreams.catalog import ModelCatalog
from gateway.upstreams.engine import EngineUpstream, engine_error
from gateway.upstreams.provider import ProviderUpstream, make_upstream

__all__ = ["EngineUpstream", "ModelCatalog", "ProviderUpstream", "engine_error", "make_upstream"]
