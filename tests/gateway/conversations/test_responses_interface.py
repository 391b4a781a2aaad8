"""What the Responses API calls for a response given `conversation` (`Conversations.items_for_input`
and `Conversations.append`), on a real SQLite store: the items in order as Responses input items,
a response's output appended whole (more than a client's 20 at once), another tenant's id a 404."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest

from gateway.admission import Admission
from gateway.errors import InvalidRequest, NotFound
from gateway.protocol.conversations import new_id, normalize_items
from gateway.services.conversations import Conversations
from gateway.store import Database, utcnow
from gateway.store.conversations import ConversationStore
from gateway.store.owned import Owner

ACME, OTHER = Owner("tn_acme", "key_a"), Owner("tn_other", "key_o")


async def test_read_and_append_as_the_responses_api_does(tmp_path: Path) -> None:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
    await database.migrate()
    store = ConversationStore(database)
    service = Conversations(cast(Admission, None), store)  # these two calls admit nothing themselves
    conversation = new_id("conv_")
    await store.create(
        ACME,
        conversation,
        at=utcnow(),
        metadata={},
        items=normalize_items([{"role": "user", "content": "Hi"}]),
    )
    response_items: list[Any] = [
        {"role": "user", "content": "What is 6 x 7?"},
        {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "calc", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "call_1", "output": "42"},
        *[
            {
                "type": "message",
                "id": f"msg_out{n}",
                "role": "assistant",
                "status": "completed",
                "content": [{"type": "output_text", "text": f"part {n}", "annotations": []}],
            }
            for n in range(25)
        ],
    ]
    stored = await service.append(ACME, conversation, response_items, end_user="alice")
    assert len(stored) == 28 and stored[1]["id"] == "fc_1" and stored[2]["id"].startswith("fco_")

    items = await service.items_for_input(Owner("tn_acme", "key_b"), conversation)
    assert [item["type"] for item in items[:4]] == [
        "message",
        "message",
        "function_call",
        "function_call_output",
    ]
    assert items[0]["content"] == [{"type": "input_text", "text": "Hi"}]
    assert items[1]["content"] == [{"type": "input_text", "text": "What is 6 x 7?"}]
    assert [item["id"] for item in items[4:]] == [f"msg_out{n}" for n in range(25)]
    assert all(item["status"] == "completed" for item in items)

    for call in (service.items_for_input(OTHER, conversation), service.append(OTHER, conversation, [])):
        with pytest.raises(NotFound) as missing:
            await call
        assert missing.value.status == 404
    with pytest.raises(InvalidRequest) as duplicate:
        await service.append(
            ACME, conversation, [{"type": "function_call_output", "id": "fc_1", "call_id": "c", "output": ""}]
        )
    assert duplicate.value.param == "items[0].id"
    with pytest.raises(InvalidRequest) as bad:
        await service.append(
            ACME, conversation, [{"role": "assistant", "content": [{"type": "input_text", "text": "x"}]}]
        )
    assert bad.value.param == "items[0].content[0].type"
    assert len(await service.items_for_input(ACME, conversation)) == 29  # nothing of the refused ones
    await database.close()
