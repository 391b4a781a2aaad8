"""What every service tells its upstream call and its request's record: the headers the engine is
sent (the request id, the trace context, any client headers the endpoint passes on) and, once an
upstream answers, which one and as which model of the chain."""

from __future__ import annotations

from collections.abc import Iterable

from gateway.admission import Ticket
from gateway.observability import bind_request, passthrough_traceparent


def upstream_headers(ticket: Ticket, forwarded: Iterable[str] = ()) -> dict[str, str]:
    """The request's id for the engine (vLLM logs it), the client's `forwarded` headers it sent, and
    the trace context to carry on."""
    request = ticket.request
    headers = {"x-request-id": request.state.engine_request_id}
    for name in forwarded:
        value = request.headers.get(name)
        if value is not None:
            headers[name] = value
    record = ticket.record
    if record is not None:
        span = record.start_upstream("engine", {"gen_ai.request.model": ticket.tab.model})
        if record.tracing.enabled:
            record.tracing.inject(span, headers)
        else:
            passthrough_traceparent(request.headers, headers)
    return headers


def chose(ticket: Ticket, upstream: str, served_model: str) -> None:
    """Name the upstream that answers in the request's logs, access line and span, and the model
    it answered as (a fallback's) in its ledger row, which is priced by it."""
    bind_request(upstream=upstream)
    ticket.tab.served_model = served_model
    record = ticket.record
    if record is not None:
        record.upstream = upstream
        record.served_model = served_model
        if record.upstream_span is not None and record.tracing.enabled:
            record.upstream_span.set_attribute("tantra.upstream", upstream)
