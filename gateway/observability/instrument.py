"""Pure ASGI instrumentation: metrics, the request span and the access line, from the ASGI messages.

Time to first token and inter-token latency are read from the timing of the response's body
chunks (the relay sends one chunk per engine event), never by parsing them: a stream costs a
clock read and a histogram observation per chunk. Only error responses (small, rare) are read,
for their OpenAI error type.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

import orjson
from opentelemetry.trace import Status, StatusCode
from prometheus_client import Histogram
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.observability import logs
from gateway.observability.metrics import GatewayMetrics
from gateway.observability.record import RequestRecord
from gateway.observability.tracing import Tracing

_QUIET_ROUTES = frozenset({"/livez", "/healthz", "/readyz", "/metrics", "/metrics/engines"})
_MAX_ERROR_BODY = 64 * 1024


class RequestInstrumentation:
    """Wraps the app inside EdgeMiddleware (so the request id is known) and outside the routes."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: GatewayMetrics,
        tracing: Tracing,
        routes: Iterable[BaseRoute] = (),
        access_log: logging.Logger | None = None,
    ) -> None:
        self.app = app
        self._metrics = metrics
        self._tracing = tracing
        self._routes = _RouteNames(routes)
        # A stdlib logger: silent where nobody configured logging (an embedding app, a test), one
        # structured line through the gateway's pipeline where `configure_logging` ran.
        self._log = access_log or logging.getLogger("tantra.access")

    # The whole request's span, metrics and access log in one pass of the ASGI call, kept together so
    # every exit path (error, disconnect, stream end) records the same way.
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = self._routes.name(scope)
        state = scope.setdefault("state", {})
        request_id = state.get("request_id")
        logs.clear_request()
        logs.bind_request(request_id=request_id)
        span = self._tracing.start_request(
            f"{scope['method']} {route}",
            _header_map(scope) if self._tracing.enabled else {},
            {"http.request.method": scope["method"], "http.route": route, "tantra.request_id": request_id},
        )
        record = RequestRecord(route=route, span=span, tracing=self._tracing)
        state["obs"] = record
        in_flight = self._metrics.in_flight.labels(route)
        in_flight.inc()
        response = _ResponseWatch(send, self._metrics, record)
        try:
            await self.app(scope, receive, response.send)
        except BaseException:
            response.status = 500
            record.error_type = record.error_type or "server_error"
            raise
        finally:
            in_flight.dec()
            if response.error_body is not None and not record.error_type:
                record.error_type = _error_type(b"".join(response.error_body))
            self._finish(scope, record, response.status, response.first_at)

    def _finish(self, scope: Scope, record: RequestRecord, status: int, first_at: float | None) -> None:
        elapsed = time.perf_counter() - record.started
        route, model = record.route, record.model
        error_type = record.error_type if status >= 400 or record.error_type else ""
        self._metrics.request_done(route, model, status, error_type, elapsed)
        if record.sent_upstream_at is not None:
            self._metrics.queue.labels(route).observe(record.sent_upstream_at - record.started)
        if record.rejected_by is not None:
            self._metrics.rejected(*record.rejected_by)
        if record.prompt_tokens or record.completion_tokens:
            served = record.served_model or model
            self._metrics.count_tokens(model, served, record.prompt_tokens, record.completion_tokens)
        if record.upstream_span is not None:
            record.upstream_span.end()
        span = record.span
        if span.is_recording():
            span.set_attribute("http.response.status_code", status)
            span.set_attribute("gen_ai.request.model", model)
            span.set_attribute("gen_ai.usage.input_tokens", record.prompt_tokens)
            span.set_attribute("gen_ai.usage.output_tokens", record.completion_tokens)
            if status >= 500:
                span.set_status(Status(StatusCode.ERROR, error_type or str(status)))
        span.end()
        if (route in _QUIET_ROUTES and status < 400) or not self._log.isEnabledFor(logging.INFO):
            return
        self._log.info(
            "request",
            extra={
                "method": scope["method"],
                "path": scope["path"],
                "route": route,
                "status": status,
                "model": model,
                "tenant": record.tenant,
                "key_prefix": record.key_prefix,
                "upstream": record.upstream,
                "served_model": record.served_model,
                "stream": record.stream,
                "outcome": record.outcome,
                "error_type": error_type or None,
                "prompt_tokens": record.prompt_tokens,
                "completion_tokens": record.completion_tokens,
                "ttft_ms": round((first_at - record.started) * 1000, 2) if first_at is not None else None,
                "latency_ms": round(elapsed * 1000, 2),
                "trace_id": format(span.get_span_context().trace_id, "032x") if span.is_recording() else None,
            },
        )


class _ResponseWatch:
    """What a response's ASGI messages tell, as they pass: its status, when a stream's chunks went
    out (time to first token, inter-token latency) and, for a JSON error, its body (to read the type).
    One per request; `send` wraps the app's send."""

    __slots__ = (
        "_itl",
        "_last_at",
        "_metrics",
        "_record",
        "_send",
        "error_body",
        "first_at",
        "status",
        "streaming",
    )

    def __init__(self, send: Send, metrics: GatewayMetrics, record: RequestRecord) -> None:
        self._send = send
        self._metrics = metrics
        self._record = record
        self._itl: Histogram | None = None
        self._last_at = 0.0
        self.status = 500
        self.streaming = False
        self.first_at: float | None = None
        self.error_body: list[bytes] | None = None

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self._started(message)
        elif message["type"] == "http.response.body":
            body = message.get("body", b"")
            if self.error_body is not None and sum(map(len, self.error_body)) < _MAX_ERROR_BODY:
                self.error_body.append(body)
            if self.streaming and body:
                self._chunk(message)
        await self._send(message)

    def _started(self, message: Message) -> None:
        self.status = message["status"]
        for name, value in message.get("headers", ()):
            if name == b"content-type":
                self.streaming = value.startswith(b"text/event-stream")
                if self.status >= 400 and value.startswith(b"application/json"):
                    self.error_body = []

    def _chunk(self, message: Message) -> None:
        """A stream's chunk went out: the first one is the time to first token, the others ITL."""
        now = time.perf_counter()
        record = self._record
        if self.first_at is None:
            self.first_at = now
            self._metrics.ttft.labels(record.route, record.model).observe(now - record.started)
            (record.upstream_span or record.span).add_event("first_token")
            self._itl = self._metrics.itl.labels(record.route, record.model)
        elif self._itl is not None and message.get("more_body", False):
            self._itl.observe(now - self._last_at)
        self._last_at = now


class _RouteNames:
    """The route template a path matches, for bounded labels: a dict hit for fixed paths, a regex
    scan only for templated ones, `other` for anything unknown (no label per random 404 path)."""

    def __init__(self, routes: Iterable[BaseRoute]) -> None:
        self._fixed: dict[str, str] = {}
        self._templated: list[tuple[BaseRoute, str]] = []
        for route in routes:
            path = getattr(route, "path", None)
            if not isinstance(path, str):
                continue
            if "{" in path:
                self._templated.append((route, path))
            else:
                self._fixed[path] = path

    def name(self, scope: Scope) -> str:
        path = scope["path"]
        fixed = self._fixed.get(path)
        if fixed is not None:
            return fixed
        probe = {"type": "http", "path": path, "method": scope["method"], "root_path": ""}
        for route, template in self._templated:
            if route.matches(probe)[0] != Match.NONE:
                return template
        return "other"


def _header_map(scope: Scope) -> dict[str, str]:
    return {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}


def _error_type(body: bytes) -> str:
    try:
        error = orjson.loads(body).get("error")
    except (orjson.JSONDecodeError, AttributeError):
        return "server_error"
    if isinstance(error, dict) and isinstance(error.get("type"), str):
        return str(error["type"])
    return "server_error"
