"""OpenTelemetry tracing: a span per request, children for its stages, W3C context in and out.

With no OTLP endpoint and no exporter handed in, `Tracing.enabled` is False and every call is a
no-op that allocates nothing, so the hot path pays for tracing only when someone reads the traces.
The provider is the app's own (never the global one), so two apps in one process stay apart.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import NonRecordingSpan, Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

_PROPAGATOR = TraceContextTextMapPropagator()
_NOOP_SPAN: Span = NonRecordingSpan(trace.INVALID_SPAN_CONTEXT)


class Tracing:
    """The app's tracer. `exporter` (tests: an in-memory one) or `otlp_endpoint` turns it on."""

    def __init__(
        self,
        *,
        service_name: str = "tantra-gateway",
        otlp_endpoint: str | None = None,
        exporter: SpanExporter | None = None,
        processor: SpanProcessor | None = None,
    ) -> None:
        self._provider: TracerProvider | None = None
        if processor is None and exporter is None and otlp_endpoint:
            exporter = _otlp_exporter(otlp_endpoint)
        if processor is None and exporter is not None:
            processor = BatchSpanProcessor(exporter)
        if processor is not None:
            self._provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
            self._provider.add_span_processor(processor)
        self._tracer = self._provider.get_tracer("tantra.gateway") if self._provider else None

    @property
    def enabled(self) -> bool:
        return self._tracer is not None

    def start_request(self, name: str, headers: Mapping[str, str], attributes: dict[str, Any]) -> Span:
        """The request's server span, child of the client's `traceparent` when it sent one."""
        if self._tracer is None:
            return _NOOP_SPAN
        parent = _PROPAGATOR.extract(headers)
        return self._tracer.start_span(name, context=parent, kind=SpanKind.SERVER, attributes=attributes)

    def start_child(self, parent: Span, name: str, attributes: dict[str, Any] | None = None) -> Span:
        if self._tracer is None or not parent.is_recording():
            return _NOOP_SPAN
        context = trace.set_span_in_context(parent)
        return self._tracer.start_span(name, context=context, kind=SpanKind.INTERNAL, attributes=attributes)

    @contextmanager
    def child(self, parent: Span, name: str, attributes: dict[str, Any] | None = None) -> Iterator[Span]:
        """A stage of the request; an exception marks it failed and goes on up."""
        span = self.start_child(parent, name, attributes)
        try:
            yield span
        except BaseException as exc:
            if span.is_recording():
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            raise
        finally:
            span.end()

    def inject(self, span: Span, headers: MutableMapping[str, str]) -> None:
        """Put `span`'s context in outgoing headers (`traceparent`), so vLLM's spans join the trace."""
        if not span.is_recording():
            return
        _PROPAGATOR.inject(headers, context=trace.set_span_in_context(span, otel_context.Context()))

    def shutdown(self) -> None:
        if self._provider is not None:
            self._provider.shutdown()

    def force_flush(self) -> None:
        if self._provider is not None:
            self._provider.force_flush()


def passthrough_traceparent(headers: Mapping[str, str], out: MutableMapping[str, str]) -> None:
    """Tracing off: still pass the client's own trace context on to the engine untouched."""
    for name in ("traceparent", "tracestate"):
        value = headers.get(name)
        if value:
            out[name] = value


def _otlp_exporter(endpoint: str) -> SpanExporter:
    # Imported only when configured: the exporter pulls in protobuf and an HTTP stack.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(endpoint=endpoint.rstrip("/") + "/v1/traces")
