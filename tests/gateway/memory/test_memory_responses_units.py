"""Where memory in the Responses API puts the block, what the client is shown back, and which of a
turn's items are queued for extraction (unit: plain data; the real engines in
test_memory_responses.py)."""

from __future__ import annotations

from typing import Any

from gateway.services.memory_chat import Placement
from gateway.services.memory_responses import (
    place_block,
    placement_json,
    placement_of,
    shown_memory,
    turn_messages,
)

BLOCK = "Remembered facts about the user:\n- likes green tea"
ASKED = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "tea?"}]}


def test_the_block_is_appended_to_the_instructions_when_the_request_has_them() -> None:
    body: dict[str, Any] = {"instructions": "Be brief.", "input": [ASKED]}
    place_block(body, BLOCK)
    assert body == {"instructions": f"Be brief.\n\n{BLOCK}", "input": [ASKED]}


def test_without_instructions_the_block_is_a_leading_system_item_or_joins_the_inputs_own() -> None:
    body: dict[str, Any] = {"instructions": None, "input": [ASKED]}
    place_block(body, BLOCK)
    assert body["instructions"] is None
    assert body["input"] == [
        {"type": "message", "role": "system", "content": [{"type": "input_text", "text": BLOCK}]},
        ASKED,
    ]
    own = {"role": "system", "content": "Answer in French."}
    body = {"input": [own, ASKED]}
    place_block(body, BLOCK)
    assert body["input"] == [{"role": "system", "content": f"Answer in French.\n\n{BLOCK}"}, ASKED]
    assert own["content"] == "Answer in French."  # the request's own item is not changed
    parts = {"type": "message", "role": "system", "content": [{"type": "input_text", "text": "Be kind."}]}
    body = {"input": [parts, ASKED]}
    place_block(body, BLOCK)
    assert body["input"][0]["content"] == [
        {"type": "input_text", "text": "Be kind."},
        {"type": "input_text", "text": BLOCK},
    ]
    # A developer message (which Qwen's template does not render) is left; the block goes first.
    developer = {"role": "developer", "content": "Be kind."}
    body = {"input": [developer, ASKED]}
    place_block(body, BLOCK)
    assert [item["role"] for item in body["input"]] == ["system", "developer", "user"]


def test_the_client_is_shown_its_own_instructions_and_the_memories_used() -> None:
    placement = Placement("pat", [("m1", 0.91234567)], BLOCK, 12)
    engine = {"instructions": f"Be brief.\n\n{BLOCK}", "usage": {"input_tokens": 30, "output_tokens": 2}}
    shown = shown_memory(engine, placement, "Be brief.")
    assert shown["instructions"] == "Be brief."
    assert shown["usage"] == {
        "input_tokens": 30,
        "output_tokens": 2,
        "tantra_memory": [{"id": "m1", "score": 0.9123}],
    }
    # Before the engine counted usage (response.created): no usage to add to.
    assert shown_memory({"instructions": BLOCK, "usage": None}, placement, None) == {
        "instructions": None,
        "usage": None,
    }
    assert shown_memory(engine, None, "x") is engine  # nothing placed: as the engine sent it


def test_a_turn_is_its_own_message_items_and_the_answer() -> None:
    answer = {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Green."}]}
    call = {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"}
    assert turn_messages([ASKED], {"output": [call, answer]}) == [ASKED, answer]
    assert turn_messages([ASKED], {"output": None}) == [ASKED]


def test_a_placement_survives_the_jobs_json() -> None:
    placement = Placement("pat", [("m1", 0.5), ("m2", 0.25)], BLOCK, 12)
    back = placement_of(placement_json(placement))
    assert back is not None and (back.user, back.used, back.tokens) == ("pat", placement.used, 12)
    assert placement_of(None) is None
