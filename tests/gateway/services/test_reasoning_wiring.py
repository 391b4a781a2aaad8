"""The chat service's reasoning wiring against a stand-in for vLLM 0.32 with a parser that does not
count (no engine needed): both names in JSON and stream, `reasoning_tokens` from the engine's
/tokenize, and `reasoning_effort` sent as the route's thinking budget. The real engine's split is
tests/gateway/services/test_reasoning_engine.py."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import orjson
import pytest

from gateway import Settings, create_app
from tests.servers import ThreadedServer

MODEL = "thinker"
USAGE = {"prompt_tokens": 9, "completion_tokens": 5, "total_tokens": 14, "completion_tokens_details": None}


class ThinkingEngine:
    """Answers as vLLM 0.32 does with a reasoning parser that cannot count (`reasoning`, 0 tokens)."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.tokenized: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/models":
            card = {"id": MODEL, "object": "model", "max_model_len": 4096}
            return httpx.Response(200, json={"object": "list", "data": [card]})
        body = orjson.loads(request.content)
        if request.url.path == "/tokenize":
            self.tokenized.append(body["prompt"])
            return httpx.Response(200, json={"count": 3, "tokens": [1, 2, 3], "max_model_len": 4096})
        self.bodies.append(body)
        if body.get("stream"):
            deltas = [{"role": "assistant", "content": ""}, {"reasoning": "hmm"}, {"reasoning": " so"}]
            events: list[dict[str, Any]] = [
                {"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": d}]}
                for d in deltas
            ]
            events.append(
                {"id": "c", "choices": [{"index": 0, "delta": {"content": "yes"}, "finish_reason": "stop"}]}
            )
            events.append({"id": "c", "object": "chat.completion.chunk", "choices": [], "usage": USAGE})
            sse = b"".join(b"data: " + orjson.dumps(e) + b"\n\n" for e in events) + b"data: [DONE]\n\n"

            async def chunks() -> Any:
                yield sse

            return httpx.Response(200, content=chunks(), headers={"content-type": "text/event-stream"})
        message = {"role": "assistant", "content": "yes", "reasoning": "hmm so"}
        choice = {"index": 0, "message": message, "finish_reason": "stop"}
        return httpx.Response(
            200, json={"id": "c", "object": "chat.completion", "choices": [choice], "usage": USAGE}
        )


@pytest.fixture(scope="module")
def engine() -> ThinkingEngine:
    return ThinkingEngine()


@pytest.fixture(scope="module")
def gateway(engine: ThinkingEngine, gateway_settings: Callable[..., Settings]) -> Iterator[str]:
    settings = gateway_settings(
        auth_enabled=False, models={MODEL: {"reasoning_budgets": {"minimal": 0, "low": 256}}}
    )
    client = httpx.AsyncClient(transport=httpx.MockTransport(engine))
    with ThreadedServer(create_app(settings, http_client=client)) as server:
        yield server.url


ASK = {"model": MODEL, "messages": [{"role": "user", "content": "Well?"}]}


def test_json_answer(gateway: str, engine: ThinkingEngine) -> None:
    answer = httpx.post(gateway + "/v1/chat/completions", json={**ASK, "reasoning_effort": "low"}, timeout=30)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    message = body["choices"][0]["message"]
    assert message["reasoning"] == message["reasoning_content"] == "hmm so"
    assert body["usage"]["completion_tokens_details"] == {"reasoning_tokens": 3}
    assert engine.tokenized[-1] == "hmm so"
    assert engine.bodies[-1]["thinking_token_budget"] == 256
    assert "chat_template_kwargs" not in engine.bodies[-1]


def test_stream(gateway: str, engine: ThinkingEngine) -> None:
    body = {**ASK, "stream": True, "stream_options": {"include_usage": True}, "reasoning_effort": "minimal"}
    with httpx.stream("POST", gateway + "/v1/chat/completions", json=body, timeout=30) as answer:
        assert answer.status_code == 200
        raw = answer.read()
    events = [orjson.loads(part[6:]) for part in raw.split(b"\n\n") if part.startswith(b"data: {")]
    deltas = [c["delta"] for e in events for c in e["choices"]]
    assert "".join(d.get("reasoning_content") or "" for d in deltas) == "hmm so"
    assert "".join(d.get("reasoning") or "" for d in deltas) == "hmm so"
    assert events[-1]["usage"]["completion_tokens_details"] == {"reasoning_tokens": 2}
    sent = engine.bodies[-1]
    assert sent["thinking_token_budget"] == 0 and sent["chat_template_kwargs"] == {"enable_thinking": False}
