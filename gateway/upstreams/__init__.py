"""Where requests go: the upstreams (one interface, `Upstream`), and what the gateway knows about
the models they serve."""

from gateway.upstreams.catalog import ModelCatalog
from gateway.upstreams.factory import make_upstream
from gateway.upstreams.http_api import engine_error
from gateway.upstreams.interface import Capabilities, ProbeFailed, Upstream, UpstreamSpec
from gateway.upstreams.provider import ProviderUpstream
from gateway.upstreams.vllm import VllmUpstream

__all__ = [
    "Capabilities",
    "ModelCatalog",
    "ProbeFailed",
    "ProviderUpstream",
    "Upstream",
    "UpstreamSpec",
    "VllmUpstream",
    "engine_error",
    "make_upstream",
]
