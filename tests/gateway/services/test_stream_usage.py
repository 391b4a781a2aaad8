"""Reading usage from the engine's SSE on the way through, whatever the chunk boundaries."""

from __future__ import annotations

import orjson
import pytest

from gateway.services.relay import StreamUsage


def event(body: object) -> bytes:
    return b"data: " + orjson.dumps(body) + b"\n\n"


ROLE = event({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]})
TOKENS = [event({"choices": [{"index": 0, "delta": {"content": f"t{i}"}}]}) for i in range(5)]
USAGE = event({"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12}})
DONE = b"data: [DONE]\n\n"
STREAM = ROLE + b"".join(TOKENS) + USAGE + DONE


@pytest.mark.parametrize("size", [1, 3, 17, 64, len(STREAM)])
@pytest.mark.parametrize("forward", [True, False])
def test_any_split(size: int, forward: bool) -> None:
    reader = StreamUsage(forward_usage=forward)
    out = b"".join(reader.feed(STREAM[i : i + size]) for i in range(0, len(STREAM), size)) + reader.rest()
    assert out == (STREAM if forward else STREAM.replace(USAGE, b""))
    assert reader.usage == {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12}
    assert reader.completion_tokens == 5


def test_cut_short_counts_tokens() -> None:
    reader = StreamUsage(forward_usage=False)
    assert reader.feed(ROLE + TOKENS[0] + TOKENS[1][:10]) == ROLE + TOKENS[0]
    assert reader.usage is None and reader.completion_tokens == 1


def test_completions_and_several_choices() -> None:
    reader = StreamUsage(forward_usage=True)
    chunk = event({"choices": [{"index": 0, "text": "a"}, {"index": 1, "text": "b"}]})
    assert reader.feed(chunk + chunk) == chunk + chunk
    assert reader.completion_tokens == 4


def test_other_events_pass() -> None:
    reader = StreamUsage(forward_usage=False)
    odd = b": keep-alive\n\n" + b"data: {not json\n\n" + event({"error": {"message": "x"}})
    assert reader.feed(odd) == odd


# What vLLM 0.32 sends when the gateway asked for usage: the fingerprint and the per-request
# metrics ride on the usage event only (chat_completion/serving.py), the terminal event has neither.
FINISH = event({"id": "c", "choices": [{"index": 0, "delta": {"content": "!"}, "finish_reason": "stop"}]})
RICH_USAGE = event(
    {
        "id": "c",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [],
        "usage": {"prompt_tokens": 7, "completion_tokens": 6, "total_tokens": 13},
        "system_fingerprint": "fp_vllm",
        "metrics": {"ttft_s": 0.01},
    }
)
RICH = ROLE + b"".join(TOKENS) + FINISH + RICH_USAGE + DONE


def events_of(stream: bytes) -> list[object]:
    return [orjson.loads(part[6:]) for part in stream.split(b"\n\n") if part.startswith(b"data: {")]


@pytest.mark.parametrize("size", [1, 5, 64, len(RICH)])
def test_usage_event_fields_move_to_the_terminal_event(size: int) -> None:
    reader = StreamUsage(forward_usage=False)
    out = b"".join(reader.feed(RICH[i : i + size]) for i in range(0, len(RICH), size))
    out += reader.release() + reader.rest()
    assert out.startswith(ROLE + b"".join(TOKENS)) and out.endswith(DONE)
    last = events_of(out)[-1]
    assert last == {
        "id": "c",
        "choices": [{"index": 0, "delta": {"content": "!"}, "finish_reason": "stop"}],
        "system_fingerprint": "fp_vllm",
        "metrics": {"ttft_s": 0.01},
    }
    assert all("usage" not in body for body in events_of(out))  # type: ignore[operator]
    assert reader.usage == {"prompt_tokens": 7, "completion_tokens": 6, "total_tokens": 13}
    assert reader.completion_tokens == 6


def test_asked_for_usage_the_stream_is_untouched() -> None:
    reader = StreamUsage(forward_usage=True)
    assert reader.feed(RICH) + reader.release() == RICH


def test_every_terminal_event_of_several_choices_is_stamped() -> None:
    second = event({"id": "c", "choices": [{"index": 1, "delta": {}, "finish_reason": "length"}]})
    reader = StreamUsage(forward_usage=False)
    out = reader.feed(ROLE + FINISH) + reader.feed(second) + reader.feed(RICH_USAGE + DONE)
    finals = events_of(out)[1:]
    assert [body["choices"][0]["index"] for body in finals] == [0, 1]  # type: ignore[index]
    assert all(body["system_fingerprint"] == "fp_vllm" for body in finals)  # type: ignore[index]


def test_other_choices_stream_while_a_terminal_event_is_held() -> None:
    other = event({"id": "c", "choices": [{"index": 1, "delta": {"content": "more"}}]})
    reader = StreamUsage(forward_usage=False)
    assert reader.feed(ROLE + FINISH + other) == ROLE + other
    out = events_of(reader.feed(RICH_USAGE + DONE))
    assert len(out) == 1 and out[0]["system_fingerprint"] == "fp_vllm"  # type: ignore[index]


def test_a_terminal_event_is_not_lost_without_a_usage_event() -> None:
    reader = StreamUsage(forward_usage=False)
    assert reader.feed(ROLE + FINISH) == ROLE
    assert reader.feed(DONE) == FINISH + DONE  # released before whatever comes next
    reader = StreamUsage(forward_usage=False)
    assert reader.feed(ROLE + FINISH) == ROLE
    assert reader.release() == FINISH  # the stream ended (or failed) there


VLLM_ERROR = {
    "object": "error",
    "message": "bad sampling",
    "type": "BadRequestError",
    "param": None,
    "code": 400,
}


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (
            VLLM_ERROR,
            {"message": "bad sampling", "type": "invalid_request_error", "param": None, "code": None},
        ),
        (
            {**VLLM_ERROR, "message": "This model's maximum context length is 8", "param": "input_tokens"},
            {
                "message": "This model's maximum context length is 8",
                "type": "invalid_request_error",
                "param": "prompt",
                "code": "context_length_exceeded",
            },
        ),
        (
            {"object": "error", "message": "boom", "type": "InternalServerError", "param": None, "code": 500},
            {"message": "boom", "type": "server_error", "param": None, "code": None},
        ),
    ],
)
def test_engine_error_events_are_reshaped_to_openai_envelope(
    error: dict[str, object], expected: dict[str, object]
) -> None:
    reader = StreamUsage(forward_usage=False)
    out = reader.feed(ROLE + event({"error": error}) + DONE)
    assert out == ROLE + event({"error": expected}) + DONE


def test_an_openai_shaped_error_event_passes_as_it_came() -> None:
    shaped = event({"error": {"message": "x", "type": "invalid_request_error", "param": None, "code": "y"}})
    assert StreamUsage(forward_usage=False).feed(shaped) == shaped
