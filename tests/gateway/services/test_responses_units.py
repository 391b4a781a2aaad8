"""The Responses API's pieces without an engine: items and their ids, what the engine is sent, the
response object as the client sees it, and the relay's reading of vLLM's events."""

from __future__ import annotations

from typing import Any

import orjson

from gateway.services.responses_items import for_engine, history, input_items, shown
from gateway.services.responses_stream import ResponseEvents, frame, usage_of


def test_a_string_input_is_one_user_message_with_an_id() -> None:
    (item,) = input_items("Hi")
    assert item["type"] == "message" and item["role"] == "user" and item["status"] == "completed"
    assert item["content"] == [{"type": "input_text", "text": "Hi"}]
    assert item["id"].startswith("msg_")


def test_items_keep_their_ids_and_get_typed() -> None:
    items = input_items(
        [
            {"role": "assistant", "content": "Before."},
            {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c", "output": "ok"},
            {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "x"}],
                "id": "msg_1",
            },
        ]
    )
    assert items[0]["content"] == [{"type": "output_text", "text": "Before."}]
    assert [item["id"][:3] for item in items[:3]] == ["msg", "fc_", "fco"]
    assert items[3]["id"] == "msg_1"


def test_the_engine_gets_input_messages_without_the_gateways_ids() -> None:
    items = input_items([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}])
    sent = for_engine(items)
    assert "id" not in sent[0] and "status" not in sent[0]
    assert sent[1]["id"] == items[1]["id"]  # an output message is the engine's own shape
    assert "id" in items[0]  # the stored items are left as they were


def test_history_is_the_previous_items_then_its_output() -> None:
    output = [{"type": "message", "role": "assistant", "id": "msg_o", "content": []}]
    assert history([{"id": "a"}], {"output": output}) == [{"id": "a"}, *output]
    assert history([{"id": "a"}], {"output": None}) == [{"id": "a"}]


def test_the_response_shows_what_the_gateway_changed_on_the_way_in() -> None:
    engine = {
        "id": "resp_x",
        "previous_response_id": None,
        "input_messages": None,
        "kv_transfer_params": None,
    }
    body = shown(
        engine, response_id="resp_x", previous_response_id="resp_p", store=True, background=False, metadata={}
    )
    assert body["previous_response_id"] == "resp_p" and body["store"] is True
    assert "input_messages" not in body and "kv_transfer_params" not in body


def _event(kind: str, **fields: Any) -> bytes:
    return frame({"type": kind, **fields})


def test_the_relay_renames_an_incomplete_completion_and_keeps_the_final_response() -> None:
    events = ResponseEvents(lambda body: {**body, "store": True})
    delta = _event("response.output_text.delta", delta="a", sequence_number=1)
    done = _event(
        "response.completed",
        sequence_number=2,
        response={"id": "r", "status": "incomplete", "usage": {"input_tokens": 3, "output_tokens": 1}},
    )
    out = events.feed(delta + done[:10]) + events.feed(done[10:])
    assert out.startswith(delta)  # a delta passes unread, byte for byte
    last = out[len(delta) :]
    assert last.startswith(b"event: response.incomplete\n")
    body = orjson.loads(last.split(b"data: ", 1)[1])
    assert body["type"] == "response.incomplete" and body["response"]["store"] is True
    assert events.done and not events.failed
    assert usage_of(events.final) == {"prompt_tokens": 3, "completion_tokens": 1}


def test_an_error_event_ends_the_stream_as_failed() -> None:
    events = ResponseEvents(lambda body: body)
    events.feed(_event("error", message="boom", sequence_number=3))
    assert events.done and events.failed and events.final is None


async def test_a_finished_stream_holds_its_final_event_for_the_citation_pass() -> None:
    async def verified(body: dict[str, Any]) -> dict[str, Any]:
        return {**body, "tantra": {"citations": {"checked": 0}}}

    events = ResponseEvents(lambda body: body, verified)
    created = _event("response.created", sequence_number=0, response={"id": "r", "status": "in_progress"})
    delta = _event("response.output_text.delta", delta="a", sequence_number=1)
    done = _event("response.completed", sequence_number=2, response={"id": "r", "status": "completed"})
    out = events.feed(created + delta + done)
    assert b"response.created" in out and out.endswith(delta)  # all but the final event, unheld
    assert await events.release() == frame(
        {
            "type": "response.completed",
            "sequence_number": 2,
            "response": {"id": "r", "status": "completed", "tantra": {"citations": {"checked": 0}}},
        }
    )
    assert events.final is not None and events.final["tantra"] == {"citations": {"checked": 0}}
    assert await events.release() == b""  # released once
    failing = ResponseEvents(lambda body: body, verified)
    assert failing.feed(_event("error", message="boom", sequence_number=3)).startswith(b"event: error")
