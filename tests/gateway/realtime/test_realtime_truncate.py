"""`conversation.item.truncate` and `.retrieve` on a session (no engine: no model call is made);
tests/gateway/realtime/test_realtime.py truncates a real spoken answer."""

from __future__ import annotations

from typing import Any, cast

import orjson

from gateway.realtime.conversation import AudioPart, Message, Spoken
from gateway.realtime.loopback import Loopback
from gateway.realtime.session import RealtimeLimits, RealtimeSession

SECOND = 48_000  # pcm16 bytes of one second at 24 kHz


class Client:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.session = RealtimeSession(
            model="m", loopback=cast(Loopback, None), send=self._receive, limits=RealtimeLimits()
        )

    async def _receive(self, event: dict[str, Any]) -> None:
        self.events.append(event)

    async def send(self, event: dict[str, Any]) -> dict[str, Any]:
        await self.session.feed(orjson.dumps(event))
        return self.events[-1]


def answer(item_id: str, text: str, spoken: list[Spoken]) -> Message:
    return Message(item_id, "assistant", [AudioPart(text, spoken)])


async def test_truncate_keeps_what_was_heard() -> None:
    client = Client()
    client.session.remember(
        answer(
            "item_a",
            "Hello there. How are you today?",
            [Spoken("Hello there.", SECOND), Spoken("How are you today?", SECOND)],
        )
    )
    event = {"type": "conversation.item.truncate", "item_id": "item_a", "content_index": 0}
    truncated = await client.send({**event, "audio_end_ms": 1500})
    assert truncated == {
        "event_id": truncated["event_id"],
        "type": "conversation.item.truncated",
        "item_id": "item_a",
        "content_index": 0,
        "audio_end_ms": 1500,
    }
    retrieved = await client.send({"type": "conversation.item.retrieve", "item_id": "item_a"})
    assert retrieved["item"]["content"][0]["transcript"] == "Hello there. How are"
    # What was cut is gone: the audio is now 1.5 s long.
    error = await client.send({**event, "audio_end_ms": 1600})
    assert error["type"] == "error" and error["error"]["param"] == "audio_end_ms"
    assert "1500ms is already shorter than 1600ms" in error["error"]["message"]
    await client.send({**event, "audio_end_ms": 500})
    retrieved = await client.send({"type": "conversation.item.retrieve", "item_id": "item_a"})
    assert retrieved["item"]["content"][0]["transcript"] == "Hello"


async def test_only_an_assistant_audio_part_can_be_truncated() -> None:
    client = Client()
    await client.send(
        {
            "type": "conversation.item.create",
            "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]},
        }
    )
    user = client.events[-1]["item"]["id"]
    for item_id, index, code, param in (
        (user, 0, "invalid_value", "item_id"),
        ("item_nope", 0, "item_not_found", "item_id"),
    ):
        error = await client.send(
            {
                "type": "conversation.item.truncate",
                "item_id": item_id,
                "content_index": index,
                "audio_end_ms": 0,
            }
        )
        assert (error["error"]["code"], error["error"]["param"]) == (code, param), error
    error = await client.send({"type": "conversation.item.retrieve", "item_id": "item_nope"})
    assert error["error"]["code"] == "item_not_found"
