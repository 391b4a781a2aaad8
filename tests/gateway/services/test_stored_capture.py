"""What `store: true` keeps, without an engine: a streamed answer put back together from its deltas
(several choices, tool calls split across events, reasoning, logprobs), the client's messages kept
before media parts are rewritten, and OpenAI's metadata rules (only with `store: true`)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from gateway.admission import validate
from gateway.errors import InvalidRequest
from gateway.protocol import ChatCompletionRequest
from gateway.services.stored_capture import Capture
from gateway.services.stored_completions import _message, completion_object


def capture(**payload: Any) -> Capture:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], **payload}
    return Capture(request_id="req-1", tenant_id="tn", key_id="key", payload=body, metadata={"a": "b"})


def chunk(choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 5,
        "model": "m",
        "choices": choices,
        **extra,
    }


def test_a_stream_is_assembled_per_choice_with_its_tool_calls() -> None:
    kept = capture(temperature=0.2, tools=[{"type": "function", "function": {"name": "f"}}], user="u9")
    seen: list[dict[str, Any]] = []
    see = kept.observer(seen.append)  # the failover transcript still sees every event
    events = [
        chunk([{"index": 0, "delta": {"role": "assistant", "content": ""}}]),
        chunk([{"index": 1, "delta": {"role": "assistant", "reasoning_content": "think"}}]),
        chunk([{"index": 0, "delta": {"content": "Hel"}, "logprobs": {"content": [{"token": "Hel"}]}}]),
        chunk([{"index": 1, "delta": {"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                                      "function": {"name": "f", "arguments": '{"x"'}}]}}]),
        chunk([{"index": 0, "delta": {"content": "lo"}, "logprobs": {"content": [{"token": "lo"}]}}]),
        chunk([{"index": 1, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": ": 1}"}}]}}]),
        chunk([{"index": 0, "delta": {}, "finish_reason": "stop"}]),
        chunk([{"index": 1, "delta": {}, "finish_reason": "tool_calls"}], system_fingerprint="fp"),
        chunk([], usage={"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}),
    ]  # fmt: skip
    for event in events:
        see(event)
    assert seen == events
    row = kept.streamed()
    assert row is not None
    assert (row.id, row.created, row.model, row.request_id) == ("chatcmpl-1", 5, "m", "req-1")
    assert (row.tenant_id, row.created_by, row.end_user, row.metadata) == ("tn", "key", "u9", {"a": "b"})
    first, second = row.choices
    assert first["message"] == {"role": "assistant", "content": "Hello"}
    assert first["logprobs"] == {"content": [{"token": "Hel"}, {"token": "lo"}]}
    assert first["finish_reason"] == "stop"
    assert second["message"]["reasoning_content"] == "think" and second["message"]["content"] is None
    assert second["message"]["tool_calls"] == [
        {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}}
    ]
    assert second["finish_reason"] == "tool_calls"
    assert row.usage == {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
    shown = completion_object(row)
    assert shown["system_fingerprint"] == "fp" and shown["temperature"] == 0.2 and shown["input_user"] == "u9"
    assert shown["object"] == "chat.completion" and shown["tools"] == [
        {"type": "function", "function": {"name": "f"}}
    ]


def test_a_json_answer_is_kept_as_it_came_and_junk_is_not() -> None:
    answer = {
        "id": "chatcmpl-9",
        "created": 7,
        "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }
    row = capture().answered(orjson.dumps(answer))
    assert row is not None and row.choices == answer["choices"] and row.id == "chatcmpl-9"
    assert capture().answered(b"not json") is None
    assert capture().answered(b'{"error": {}}') is None
    assert capture().streamed() is None  # no stream was observed


def test_the_client_messages_are_kept_before_media_parts_are_rewritten() -> None:
    parts: list[Any] = [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": "data:,"}},
    ]
    payload: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": list(parts)}]}
    kept = Capture(request_id="r", tenant_id=None, key_id=None, payload=payload, metadata={})
    payload["messages"][0]["content"][1] = {"type": "text", "text": "(the image's description)"}
    assert kept.messages[0]["content"][1]["type"] == "image_url"
    listed = _message("chatcmpl-1", 0, kept.messages[0])
    assert listed["id"] == "chatcmpl-1-0" and listed["content"] == "what is this?"
    assert listed["content_parts"] == parts and listed["name"] is None


@pytest.mark.parametrize(
    ("metadata", "param", "code"),
    [
        ({f"k{i}": "v" for i in range(17)}, "metadata", "object_above_max_properties"),
        ({"k" * 65: "v"}, "metadata", "string_above_max_length"),
        ({"k": "v" * 513}, "metadata.k", "string_above_max_length"),
        ({"n": 1}, "metadata.n", "invalid_type"),
        ({"b": True}, "metadata.b", "invalid_type"),
        (["a"], "metadata", "invalid_type"),
    ],
)
def test_metadata_follows_openai_rules_when_stored(metadata: Any, param: str, code: str) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "metadata": metadata}
    with pytest.raises(InvalidRequest) as caught:
        validate(ChatCompletionRequest, {**body, "store": True})
    assert (caught.value.param, caught.value.code) == (param, code)
    # Without `store`, metadata is a key vLLM ignores: any value passes, as vLLM takes it.
    validate(ChatCompletionRequest, body)
    validate(ChatCompletionRequest, {**body, "store": False})


def test_metadata_at_the_limits_passes() -> None:
    metadata = {f"{i:064d}": "v" * 512 for i in range(16)}
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "store": True,
        "metadata": metadata,
    }
    assert validate(ChatCompletionRequest, body).metadata == metadata
