"""Metrics, spans and the access line from the instrumentation middleware, on a small ASGI app built
here (a JSON route, an SSE route paced like an engine, an error in OpenAI's envelope)."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Iterator

import httpx
import orjson
import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from gateway.errors import RateLimited
from gateway.observability import GatewayMetrics, RequestInstrumentation, Tracing, configure_logging
from gateway.observability.federation import Exposition
from gateway.observability.logs import reset_logging
from gateway.observability.record import record_of


def sample(metrics: GatewayMetrics, name: str, **labels: str) -> float:
    """The value of one sample in the app's exposition, as a scraper would read it."""
    for family in text_string_to_metric_families(metrics.render().decode()):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return 0.0


def build(metrics: GatewayMetrics, tracing: Tracing) -> RequestInstrumentation:
    async def answer(request: Request) -> Response:
        record = record_of(request.state)
        assert record is not None
        record.model, record.tenant, record.key_prefix = "m1", "tenant-1", "sk-tantra-AbCd"
        with record.child("auth"):
            pass
        record.start_upstream("engine")
        record.served_model = "m1-ext"  # a fallback of m1 answered: its tokens say so
        record.use(prompt_tokens=7, completion_tokens=3)
        return JSONResponse({"ok": True})

    async def stream(request: Request) -> Response:
        record = record_of(request.state)
        assert record is not None
        record.model, record.stream = "m1", True
        record.start_upstream("engine")

        async def events() -> AsyncIterator[bytes]:
            await asyncio.sleep(0.05)
            for i in range(4):
                yield f'data: {{"i": {i}}}\n\n'.encode()
                await asyncio.sleep(0.02)
            yield b"data: [DONE]\n\n"
            record.use(prompt_tokens=5, completion_tokens=4)

        return StreamingResponse(events(), media_type="text/event-stream")

    async def limited(_: Request) -> Response:
        return RateLimited("slow down").response()

    app = Starlette(
        routes=[
            Route("/v1/answer", answer, methods=["POST"]),
            Route("/v1/stream", stream, methods=["POST"]),
            Route("/v1/items/{item}", limited),
        ]
    )
    return RequestInstrumentation(app, metrics=metrics, tracing=tracing, routes=app.routes)


@pytest.fixture
def access() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    configure_logging(log_format="json", level="info", stream=stream)
    yield stream
    reset_logging()


async def test_counts_latency_tokens_and_the_access_line(access: io.StringIO) -> None:
    metrics = GatewayMetrics()
    app = build(metrics, Tracing())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as client:
        for _ in range(2):
            assert (await client.post("/v1/answer")).status_code == 200
        assert (await client.get("/v1/items/a")).status_code == 429
        assert (await client.get("/v1/items/b")).status_code == 429
        assert (await client.get("/nowhere/1")).status_code == 404
    counted = sample(metrics, "tantra_requests_total", route="/v1/answer", model="m1", status="200")
    assert counted == 2
    assert sample(metrics, "tantra_requests_total", route="/v1/items/{item}", status="429") == 2
    assert (
        sample(
            metrics, "tantra_requests_total", route="/v1/items/{item}", status="429", error_type="requests"
        )
        == 2
    )
    assert sample(metrics, "tantra_requests_total", route="other", status="404") == 1
    assert sample(metrics, "tantra_request_duration_seconds_count", route="/v1/answer") == 2
    assert sample(metrics, "tantra_tokens_total", model="m1", served_model="m1-ext", kind="prompt") == 14
    assert sample(metrics, "tantra_tokens_total", model="m1", served_model="m1-ext", kind="completion") == 6
    assert sample(metrics, "tantra_queue_time_seconds_count", route="/v1/answer") == 2
    assert sample(metrics, "tantra_requests_in_flight", route="/v1/answer") == 0

    lines = [orjson.loads(line) for line in access.getvalue().splitlines()]
    first = next(line for line in lines if line.get("route") == "/v1/answer")
    assert first["event"] == "request"
    assert (first["status"], first["model"], first["tenant"], first["key_prefix"]) == (
        200,
        "m1",
        "tenant-1",
        "sk-tantra-AbCd",
    )
    assert (first["prompt_tokens"], first["completion_tokens"], first["upstream"]) == (7, 3, "engine")
    assert first["served_model"] == "m1-ext"
    assert first["latency_ms"] >= 0
    assert len([line for line in lines if line.get("event") == "request"]) == 5


async def test_stream_timing_comes_from_the_chunks(access: io.StringIO) -> None:
    metrics = GatewayMetrics()
    app = build(metrics, Tracing())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as client:
        body = (await client.post("/v1/stream")).text
    assert body.endswith("data: [DONE]\n\n")
    assert sample(metrics, "tantra_time_to_first_token_seconds_count", route="/v1/stream") == 1
    ttft = sample(metrics, "tantra_time_to_first_token_seconds_sum", route="/v1/stream")
    assert 0.04 <= ttft < 1.0
    gaps = sample(metrics, "tantra_inter_token_latency_seconds_count", route="/v1/stream", model="m1")
    assert gaps >= 3
    mean_gap = sample(metrics, "tantra_inter_token_latency_seconds_sum", route="/v1/stream") / gaps
    assert 0.0 <= mean_gap < 0.5
    line = next(orjson.loads(x) for x in access.getvalue().splitlines() if "/v1/stream" in x)
    assert line["stream"] is True and line["ttft_ms"] >= 40 and line["completion_tokens"] == 4


async def test_spans_form_a_chain_under_the_clients_trace() -> None:
    exporter = InMemorySpanExporter()
    tracing = Tracing(processor=SimpleSpanProcessor(exporter))
    app = build(GatewayMetrics(), tracing)
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    headers = {"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as client:
        await client.post("/v1/answer", headers=headers)
        await client.post("/v1/stream", headers=headers)
    spans = exporter.get_finished_spans()
    by_name: dict[str, list] = {}
    for span in spans:
        by_name.setdefault(span.name, []).append(span)
    server = by_name["POST /v1/answer"][0]
    assert format(server.context.trace_id, "032x") == trace_id
    assert server.parent is not None and format(server.parent.span_id, "016x") == "00f067aa0ba902b7"
    auth = by_name["auth"][0]
    assert auth.parent is not None and auth.parent.span_id == server.context.span_id
    upstreams = by_name["upstream"]
    assert all(u.context.trace_id == server.context.trace_id for u in upstreams)
    streamed = next(u for u in upstreams if any(e.name == "first_token" for e in u.events))
    stream_server = by_name["POST /v1/stream"][0]
    assert streamed.parent is not None and streamed.parent.span_id == stream_server.context.span_id
    assert stream_server.attributes is not None
    assert stream_server.attributes["http.response.status_code"] == 200


async def test_tracing_off_is_a_no_op() -> None:
    tracing = Tracing()
    assert not tracing.enabled
    app = build(GatewayMetrics(), tracing)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as client:
        assert (await client.post("/v1/stream")).status_code == 200
    span = tracing.start_request("x", {}, {})
    assert not span.is_recording()
    headers: dict[str, str] = {}
    tracing.inject(span, headers)
    assert headers == {}


def test_engine_metrics_gain_an_upstream_label() -> None:
    text = (
        "# HELP vllm:num_requests_running Running.\n"
        "# TYPE vllm:num_requests_running gauge\n"
        'vllm:num_requests_running{engine="0",model_name="tiny"} 2.0\n'
        "process_open_fds 12.0\n"
    )
    exposition = Exposition()
    exposition.add(text, "a")
    exposition.add(text, "b")
    lines = exposition.lines()
    assert 'vllm:num_requests_running{upstream="a",engine="0",model_name="tiny"} 2.0' in lines
    assert 'process_open_fds{upstream="b"} 12.0' in lines
    assert len([line for line in lines if line.startswith("# TYPE")]) == 1
    families = list(text_string_to_metric_families("\n".join(lines) + "\n"))
    running = next(f for f in families if f.name == "vllm:num_requests_running")
    assert {s.labels["upstream"] for s in running.samples} == {"a", "b"}
