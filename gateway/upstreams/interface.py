"""What every upstream is to the gateway, whatever serves behind it: one shape, and flags for the rest.

Routing, failover, health and metrics federation hold an `Upstream` and ask its `capabilities`
what it can do, never which kind it is: the kind (a configuration string) becomes a class in one
place, `gateway.upstreams.factory.make_upstream`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class Capabilities:
    """What an upstream offers beyond OpenAI's API, so callers can ask instead of checking its kind."""

    # Takes vLLM's `continue_final_message` continuation: a broken stream may fail over to it.
    continues_streams: bool = False
    # Has a tokenizer endpoint (vLLM's /tokenize): failover counts what was already generated.
    counts_tokens: bool = False
    # Exposes Prometheus metrics of its own, federated into /metrics/engines.
    serves_metrics: bool = False
    # Has a /health of its own and may be deep-checked (one generated token) for readiness.
    has_health_endpoint: bool = False
    # Its /v1/models joins the gateway's catalogue, and a model it lists may be sent to it without
    # a route. A provider serves only what is routed to it: its catalogue is not the gateway's.
    joins_catalogue: bool = False
    # Sends the gateway's own API key (`api_key_env`) on every call.
    uses_api_key: bool = False
    # Serves Anthropic's Messages API (/v1/messages, /v1/messages/count_tokens) itself, as vLLM does.
    serves_messages: bool = False
    # Serves OpenAI's Responses API (/v1/responses) itself, as vLLM does.
    serves_responses: bool = False


@dataclass(frozen=True)
class UpstreamSpec:
    """What the configuration says an upstream is; an upstream is rebuilt when its spec changes."""

    kind: str
    base_url: str
    api_key: str | None = None


class UpstreamAnswer(Protocol):
    """An upstream's 200 answer with its body unread, as the request path reads it: httpx's
    `Response` (the provider path, or httpx's own pool), or the engine transport's `EngineAnswer`
    (aiohttp's response read directly, without httpx's objects). Transport failures are raised as
    httpx's exceptions either way; the reader must `aclose` it."""

    @property
    def status_code(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]:
        """Case-insensitive."""
        ...

    def aiter_raw(self) -> AsyncIterator[bytes]:
        """The body's bytes as they come; closes the answer at its end."""
        ...

    async def aread(self) -> bytes:
        """The whole body; closes the answer."""
        ...

    async def aclose(self) -> None:
        """Releases the connection (an unfinished body closes it: vLLM aborts the request)."""
        ...


class ProbeFailed(Exception):
    """A deep check's verdict against an upstream; the message is the reason readiness shows."""


@runtime_checkable
class Upstream(Protocol):
    """One server the gateway relays to."""

    @property
    def kind(self) -> str:
        """The configuration's name for it (`kind`), shown to operators in /health/upstreams."""
        ...

    @property
    def base_url(self) -> str: ...

    @property
    def capabilities(self) -> Capabilities: ...

    def same_as(self, spec: UpstreamSpec) -> bool:
        """Whether this upstream is the one a (reloaded) configuration describes."""
        ...

    async def open(
        self, path: str, body: bytes, headers: dict[str, str], *, connect_timeout_s: float | None = None
    ) -> UpstreamAnswer:
        """POST `body` to `path`; the 200 response with its body unread (the caller closes it).

        Any other answer, or none, is raised as the APIError a client should see."""
        ...

    async def list_models(self, timeout_s: float) -> list[dict[str, Any]]:
        """Its /v1/models cards (each with an `id`); APIError when it cannot say."""
        ...

    async def is_healthy(self, timeout_s: float) -> bool:
        """The breaker's cheap probe: whether it answers at all."""
        ...

    async def deep_check(self, model: str | None, *, generate: bool) -> str:
        """The model it serves (`model` when listed, else its first), proven by generating one
        token when `generate`; raises ProbeFailed with the reason. The caller bounds the time."""
        ...

    async def count_tokens(self, model: str, text: str, timeout_s: float) -> int | None:
        """How many tokens `text` is to its tokenizer; None when it cannot say."""
        ...

    async def scrape_metrics(self, timeout_s: float) -> str | None:
        """Its Prometheus exposition; None when unreachable or it has none."""
        ...
