"""What one request did, filled in as it moves through the gateway and read once at its end."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.trace import Span

from gateway.observability.tracing import Tracing

UNKNOWN_MODEL = "unknown"


@dataclass(slots=True)
class RequestRecord:
    """Created by the instrumentation middleware and kept in `scope["state"]["obs"]`; the serving
    layer fills in who called and what they used, the middleware turns it into metrics and the
    access line. One object per request and no lookups, so recording stays cheap."""

    route: str
    span: Span
    tracing: Tracing
    started: float = field(default_factory=time.perf_counter)
    model: str = UNKNOWN_MODEL
    tenant: str | None = None
    key_prefix: str | None = None
    upstream: str | None = None
    # The model that answered (`model`, or a fallback of it), once an upstream answered.
    served_model: str | None = None
    stream: bool = False
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error_type: str = ""
    outcome: str | None = None
    rejected_by: tuple[str, str] | None = None  # (limit, scope) of a 429
    upstream_span: Span | None = None
    sent_upstream_at: float | None = None

    def child(self, name: str, attributes: dict[str, Any] | None = None) -> Any:
        """A context manager for a stage of this request (auth, rate_limit, preprocess, ...)."""
        return self.tracing.child(self.span, name, attributes)

    def start_upstream(self, upstream: str, attributes: dict[str, Any] | None = None) -> Span:
        """The upstream call's span; it stays open until the last byte of the answer is sent, and the
        middleware adds the first token as an event on it."""
        self.upstream = upstream
        self.sent_upstream_at = time.perf_counter()
        self.upstream_span = self.tracing.start_child(
            self.span, "upstream", {"tantra.upstream": upstream, **(attributes or {})}
        )
        return self.upstream_span

    def use(self, *, prompt_tokens: int | None, completion_tokens: int | None) -> None:
        self.prompt_tokens = int(prompt_tokens or 0)
        self.completion_tokens = int(completion_tokens or 0)


def record_of(scope_state: Any) -> RequestRecord | None:
    """The record of a request, from `request.state` or the raw `scope["state"]` dict."""
    value = scope_state.get("obs") if isinstance(scope_state, dict) else getattr(scope_state, "obs", None)
    return value if isinstance(value, RequestRecord) else None
