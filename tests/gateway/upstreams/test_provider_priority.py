"""vLLM's `priority` (batch lines carry TANTRA_BATCH_ENGINE_PRIORITY) reaches vLLM upstreams as sent
and never an external provider, whose OpenAI API has no such field. A recording transport stands in
for the upstream: this is the gateway's own body rewriting, not a feature of the engine."""

from __future__ import annotations

import httpx
import orjson

from gateway.upstreams import make_upstream
from gateway.upstreams.interface import UpstreamSpec


async def _sent(kind: str, body: bytes) -> bytes:
    seen: list[bytes] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request.content)
        return httpx.Response(200, json={"ok": True})

    async with httpx.AsyncClient(transport=httpx.MockTransport(record)) as client:
        upstream = make_upstream(
            UpstreamSpec(kind, "http://up", "sk-1" if kind == "openai" else None), client
        )
        response = await upstream.open("/v1/chat/completions", body, {})
        await response.aclose()
    return seen[0]


async def test_priority_goes_to_vllm_and_not_to_a_provider() -> None:
    body = orjson.dumps({"model": "m", "messages": [], "priority": 10})
    assert await _sent("vllm", body) == body
    assert orjson.loads(await _sent("openai", body)) == {"model": "m", "messages": []}
    # Bodies without the field pass through untouched (not even parsed), as do odd ones.
    plain = b'{"model": "m", "messages": [{"role": "user", "content": "no priority key"}]}'
    assert await _sent("openai", plain) == plain
    quoted = b'{"model": "m", "messages": [{"role": "user", "content": "\\"priority\\""}]}'
    assert await _sent("openai", quoted) == quoted
