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
