"""Chat's reasoning through the gateway's own logic (services/reasoning.py, the relay, stored
capture, moderation, mid-stream failover), on hand-written engine bytes in vLLM 0.32's shapes. The
real engine's split is tests/gateway/services/test_reasoning_engine.py."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from gateway.services.moderated import _choice_text
from gateway.services.moderation_stream import _delta_text
from gateway.services.reasoning import (
    ReasoningCounter,
    StreamReasoning,
    responses_thinking_fields,
    thinking_fields,
)
from gateway.services.relay import StreamUsage
from gateway.services.stored_capture import StreamAssembler
from gateway.upstreams.failover import StreamTranscript

CHAT = "/v1/chat/completions"


def event(body: object) -> bytes:
    return b"data: " + orjson.dumps(body) + b"\n\n"


def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "c1",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


# vLLM 0.32 with a reasoning parser: `reasoning` deltas, then `content` ones.
STREAM = [
    chunk({"role": "assistant", "content": ""}),
    chunk({"reasoning": "abc"}),
    chunk({"reasoning": " def"}),
    chunk({"content": "the"}),
    chunk({"content": " answer"}, finish="stop"),
]


def _bodies(out: bytes) -> list[dict[str, Any]]:
    return [orjson.loads(part[6:]) for part in out.split(b"\n\n") if part.startswith(b"data: {")]


class _Upstream:
    class capabilities:  # the attribute the counter reads
        counts_tokens = True

    def __init__(self, count: int | None) -> None:
        self.count = count
        self.asked: list[tuple[str, str]] = []

    async def count_tokens(self, model: str, text: str, timeout_s: float) -> int | None:
        self.asked.append((model, text))
        return self.count


class _Pool:
    def __init__(self, upstream: _Upstream) -> None:
        self.upstream = upstream

    def upstreams(self) -> dict[str, Any]:
        return {"engine": self.upstream}


def _answer(message: dict[str, Any], usage: dict[str, Any]) -> bytes:
    choice = {"index": 0, "message": message, "finish_reason": "stop"}
    return orjson.dumps({"id": "c1", "object": "chat.completion", "choices": [choice], "usage": usage})


@pytest.mark.parametrize("forward", [True, False])
def test_stream_deltas_carry_both_names_and_usage_is_filled(forward: bool) -> None:
    usage = {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9}
    stream = b"".join(event(body) for body in STREAM) + event({"choices": [], "usage": usage})
    seen: list[dict[str, Any]] = []
    reader = StreamUsage(forward_usage=forward, observe=seen.append, reasoning=StreamReasoning())
    # One byte at a time: events cut anywhere still come out whole and rewritten.
    out = b"".join(reader.feed(stream[i : i + 7]) for i in range(0, len(stream), 7)) + reader.release()
    deltas = [body["choices"][0]["delta"] for body in _bodies(out) if body.get("choices")]
    reasoning = [d for d in deltas if "reasoning" in d]
    assert [(d["reasoning"], d["reasoning_content"]) for d in reasoning] == [("abc", "abc"), (" def", " def")]
    assert "".join(d.get("content") or "" for d in deltas) == "the answer"
    # vLLM counted nothing (a parser without count_reasoning_tokens): one event per token.
    assert reader.usage is not None and reader.usage["completion_tokens_details"] == {"reasoning_tokens": 2}
    assert reader.completion_tokens == 4
    # The stored completion's assembly sees both names.
    assembler = StreamAssembler()
    for body in seen:
        assembler.see(body)
    message = assembler.choices()[0]["message"]
    assert message["reasoning"] == message["reasoning_content"] == "abc def"
    assert message["content"] == "the answer"


def test_stream_without_reasoning_passes_bytes_as_they_came() -> None:
    plain = [chunk({"role": "assistant", "content": ""}), chunk({"content": "hi"}, finish="stop")]
    usage = {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}
    stream = b"".join(event(body) for body in plain) + event({"choices": [], "usage": usage})
    reader = StreamUsage(forward_usage=True, reasoning=StreamReasoning())
    assert reader.feed(stream) == stream
    counted = {**usage, "completion_tokens_details": {"reasoning_tokens": 3}}
    reader = StreamUsage(forward_usage=True, reasoning=StreamReasoning())
    # The engine's own count stands.
    out = reader.feed(event(STREAM[1]) + event({"choices": [], "usage": counted}))
    assert _bodies(out)[-1]["usage"]["completion_tokens_details"] == {"reasoning_tokens": 3}


async def test_json_answer_gets_both_names_and_a_count_from_the_tokenizer() -> None:
    upstream = _Upstream(count=6)
    counter = ReasoningCounter(_Pool(upstream))  # type: ignore[arg-type]
    usage = {
        "prompt_tokens": 5,
        "completion_tokens": 9,
        "total_tokens": 14,
        "completion_tokens_details": None,
    }
    answer = _answer({"role": "assistant", "content": "the answer", "reasoning": "abc def"}, usage)
    body = orjson.loads(await counter.complete(answer, "engine", "served-m"))
    message = body["choices"][0]["message"]
    assert message["reasoning"] == message["reasoning_content"] == "abc def"
    assert body["usage"]["completion_tokens_details"] == {"reasoning_tokens": 6}
    assert upstream.asked == [("served-m", "abc def")]
    # A provider's `reasoning_content` gets vLLM's name; its count stands; nothing re-tokenized.
    counted = {**usage, "completion_tokens_details": {"reasoning_tokens": 2}}
    answer = _answer({"role": "assistant", "content": "x", "reasoning_content": "hmm"}, counted)
    body = orjson.loads(await counter.complete(answer, "engine", "m"))
    assert body["choices"][0]["message"]["reasoning"] == "hmm"
    assert body["usage"]["completion_tokens_details"] == {"reasoning_tokens": 2}
    assert len(upstream.asked) == 1
    # No tokenizer answers: four characters a token, as the gateway estimates.
    counter = ReasoningCounter(_Pool(_Upstream(count=None)))  # type: ignore[arg-type]
    answer = _answer({"role": "assistant", "content": "x", "reasoning": "abcdefghi"}, dict(usage))
    body = orjson.loads(await counter.complete(answer, "engine", "m"))
    assert body["usage"]["completion_tokens_details"] == {"reasoning_tokens": 3}
    # No reasoning: the engine's bytes as they came.
    plain = _answer({"role": "assistant", "content": "x"}, usage)
    assert await counter.complete(plain, "engine", "m") is plain


def test_moderation_judges_the_reasoning_too() -> None:
    choice = {"message": {"content": "fine", "reasoning": "bad thought"}}
    assert _choice_text(choice) == "bad thought\nfine"
    assert _delta_text({"reasoning": "bad", "reasoning_content": "bad"}) == "bad"
    assert _delta_text({"content": "ok"}) == "ok"


def test_failover_continues_from_the_reasoning() -> None:
    payload = {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 10,
        "stream": True,
    }
    transcript = StreamTranscript(CHAT, payload)
    for body in STREAM[:3]:
        transcript.see(body)
    body = orjson.loads(transcript.continuation(already=2) or b"")
    # Broken while thinking: the next replica goes on inside the `<think>` block.
    assert body["messages"][-1] == {"role": "assistant", "content": "<think>abc def"}
    assert body["max_tokens"] == 8 and body["continue_final_message"] is True
    transcript.see(STREAM[3])
    body = orjson.loads(transcript.continuation(already=3) or b"")
    assert body["messages"][-1]["content"] == "<think>abc def</think>the"
    # The continuation's first event, carrying reasoning with its role, is not dropped.
    first = transcript.rewrite(event(chunk({"role": "assistant", "reasoning": "x"})), already=3)
    assert first is not None and orjson.loads(first[6:])["choices"][0]["delta"] == {"reasoning": "x"}


def test_reasoning_effort_becomes_the_routes_thinking_budget() -> None:
    from gateway.settings.policy import Policy
    from gateway.settings.sections import ModelRoute

    route = ModelRoute(
        upstreams=["engine"], reasoning_budgets={"none": 0, "minimal": 0, "low": 64, "high": 512}
    )
    budgets = Policy(models={"q": route}).reasoning_budgets("q")
    assert Policy(models={"q": route}).reasoning_budgets("other") is None
    asked: dict[str, Any] = {"model": "q", "reasoning_effort": "low"}
    assert thinking_fields(asked, budgets) == {"thinking_token_budget": 64}
    # none and minimal switch a Qwen3 template's thinking off as well; the client's kwargs are kept.
    asked = {"reasoning_effort": "minimal", "chat_template_kwargs": {"x": 1}}
    assert thinking_fields(asked, budgets) == {
        "thinking_token_budget": 0,
        "chat_template_kwargs": {"x": 1, "enable_thinking": False},
    }
    # What the client set itself stands; an effort the route does not list goes to vLLM as sent.
    asked = {
        "reasoning_effort": "none",
        "thinking_token_budget": 9,
        "chat_template_kwargs": {"enable_thinking": True},
    }
    assert thinking_fields(asked, budgets) == {}
    assert thinking_fields({"reasoning_effort": "medium"}, budgets) == {}
    assert thinking_fields({"reasoning_effort": "low"}, None) == {}
    # Never a budget under a grammar (vLLM 0.32's engine died on one forcing `</think>` into it).
    for grammar in ({"structured_outputs": {"regex": "a+"}}, {"response_format": {"type": "json_object"}}):
        assert thinking_fields({"reasoning_effort": "low", **grammar}, budgets) == {}


def test_responses_effort_switches_thinking_off_only() -> None:
    budgets = {"none": 0, "minimal": 0, "high": 512}
    assert responses_thinking_fields({"reasoning": {"effort": "minimal"}}, budgets) == {
        "chat_template_kwargs": {"enable_thinking": False}
    }
    # vLLM's Responses API has no thinking budget to set.
    assert responses_thinking_fields({"reasoning": {"effort": "high"}}, budgets) == {}
    assert responses_thinking_fields({"reasoning": None}, budgets) == {}
