"""The one place where a configuration's `kind` string becomes an upstream class.

Everything else asks an upstream's `capabilities`, so a new kind is a class and a line here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

import httpx

from gateway.upstreams.interface import Capabilities, Upstream, UpstreamSpec
from gateway.upstreams.provider import ProviderUpstream
from gateway.upstreams.vllm import VllmUpstream

if TYPE_CHECKING:
    from gateway.settings.sections import UpstreamConfig


class UpstreamClass(Protocol):
    """An upstream class: what its upstreams can do, and how one is built. Typing the table below
    with it has mypy prove that every class builds an `Upstream`."""

    @property
    def capabilities(self) -> Capabilities: ...

    def __call__(
        self, spec: UpstreamSpec, client: httpx.AsyncClient, probes: httpx.AsyncClient | None = None
    ) -> Upstream: ...


_CLASSES: dict[str, UpstreamClass] = {
    "vllm": VllmUpstream,
    "openai": ProviderUpstream,
}


def make_upstream(
    spec: UpstreamSpec, client: httpx.AsyncClient, probes: httpx.AsyncClient | None = None
) -> Upstream:
    """The upstream a configuration entry describes, on the gateway's pooled client; its health
    probes on `probes` (the probes' own client) when given, else on the pooled client too."""
    return _upstream_class(spec.kind)(spec, client, probes)


def capabilities_of(kind: str) -> Capabilities:
    """What an upstream of this kind can do, before one is built (the configuration's checks)."""
    return _upstream_class(kind).capabilities


def config_problems(upstreams: Mapping[str, UpstreamConfig]) -> list[tuple[str, str]]:
    """(setting, message) for what an entry asks of a kind that cannot do it: a key for an upstream
    that sends none (the gateway's probes and scrapes of a vLLM server carry no key)."""
    keyed = " or ".join(f"`kind: {kind}`" for kind, cls in _CLASSES.items() if cls.capabilities.uses_api_key)
    return [
        (f"upstreams.{name}.api_key_env", f"api_key_env is for {keyed} upstreams")
        for name, config in upstreams.items()
        if config.api_key_env is not None and not capabilities_of(config.kind).uses_api_key
    ]


def _upstream_class(kind: str) -> UpstreamClass:
    try:
        return _CLASSES[kind]
    except KeyError:
        raise ValueError(f"unknown upstream kind {kind!r}; known: {', '.join(_CLASSES)}") from None
