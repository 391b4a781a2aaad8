"""A stream through the gateway carries what the same stream from vLLM directly carries, though the
gateway asks the engine for usage on the client's behalf and hides the usage event it did not ask for."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

pytestmark = pytest.mark.engine

HELLO = [{"role": "user", "content": "Say hello."}]


def streamed(url: str, path: str, headers: dict[str, str], body: dict[str, Any]) -> list[dict[str, Any]]:
    with httpx.stream(
        "POST", url + path, json={**body, "stream": True}, headers=headers, timeout=120
    ) as answer:
        assert answer.status_code == 200
        raw = answer.read()
    assert raw.endswith(b"data: [DONE]\n\n")
    return [orjson.loads(part[6:]) for part in raw.split(b"\n\n") if part.startswith(b"data: {")]


def terminal(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [event for event in events if any(c.get("finish_reason") for c in event.get("choices") or [])]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/chat/completions", {"messages": HELLO, "max_tokens": 4, "ignore_eos": True}),
        ("/v1/completions", {"prompt": "Hello", "max_tokens": 4, "ignore_eos": True}),
        ("/v1/chat/completions", {"messages": HELLO, "max_tokens": 3, "n": 2, "ignore_eos": True}),
    ],
)
def test_fingerprint_reaches_a_client_that_did_not_ask_for_usage(
    engine_url: str, gateway_url: str, auth: dict[str, str], model: str, path: str, body: dict[str, Any]
) -> None:
    body = {"model": model, **body}
    direct = streamed(engine_url, path, {}, body)
    relayed = streamed(gateway_url, path, auth, body)
    # vLLM stamps its terminal events when usage is not asked for (chat_completion/serving.py).
    fingerprints = {event.get("system_fingerprint") for event in terminal(direct)}
    assert len(fingerprints) == 1 and None not in fingerprints
    assert [event.get("system_fingerprint") for event in terminal(relayed)] == [
        event.get("system_fingerprint") for event in terminal(direct)
    ]
    assert terminal(relayed)[-1] is relayed[-1]  # the terminal events are still the last ones
    assert all("usage" not in event and event["choices"] for event in relayed)


def test_asked_for_usage_the_fingerprint_rides_on_the_usage_event(
    engine_url: str, gateway_url: str, auth: dict[str, str], model: str
) -> None:
    body = {"model": model, "messages": HELLO, "max_tokens": 3, "stream_options": {"include_usage": True}}
    direct, relayed = (
        streamed(engine_url, "/v1/chat/completions", {}, body),
        streamed(gateway_url, "/v1/chat/completions", auth, body),
    )
    assert relayed[-1]["choices"] == [] and relayed[-1]["usage"]["completion_tokens"] == 3
    assert relayed[-1]["system_fingerprint"] == direct[-1]["system_fingerprint"]
