"""/v1/feedback against a real gateway (Redis, SQLite, no engine): feedback on a stored chat
completion, a stored response and a conversation item; reading, listing (filters, cursor pages) and
deleting it; another tenant's ids are 404s whatever it tries; OpenAI's envelope for every bad body
(never a 422); the admin API's listing across tenants; each call a ledger row."""

from __future__ import annotations

from typing import Any

import httpx

from tests.gateway.feedback.conftest import Caller, FeedbackGateway
from tests.gateway.helpers import envelope


def test_feedback_on_each_kind_of_answer_read_back_listed_and_deleted(
    feedback_gateway: FeedbackGateway,
) -> None:
    acme = feedback_gateway.caller("acme")
    completion = feedback_gateway.completion(acme, "Capital of France?", "Lyon")
    response = feedback_gateway.response(acme, "Capital of Spain?", "Madrid")
    conversation = acme.client.conversations.create(
        items=[
            {"type": "message", "role": "user", "content": "Capital of Italy?"},
            {"type": "message", "role": "assistant", "content": "Rome"},
        ]
    )
    items = acme.client.conversations.items.list(conversation.id, order="asc").data
    answer_item = items[1].id

    made = acme.post(
        "/v1/feedback",
        {
            "completion_id": completion,
            "rating": "down",
            "label": "wrong_fact",
            "comment": "Paris, surely",
            "correction": "Paris",
            "user": "end-user-1",
            "metadata": {"screen": "chat"},
        },
    )
    assert made.status_code == 200, made.text
    first = made.json()
    assert first["id"].startswith("feedback_") and first["object"] == "feedback"
    assert (first["target_type"], first["target_id"], first["model"]) == (
        "chat.completion",
        completion,
        "tantra-tiny",
    )
    assert (first["rating"], first["label"], first["correction"], first["user"]) == (
        "down",
        "wrong_fact",
        "Paris",
        "end-user-1",
    )
    assert first["metadata"] == {"screen": "chat"}
    stars = acme.post("/v1/feedback", {"response_id": response, "rating": 5}).json()
    assert (stars["target_type"], stars["rating"]) == ("response", 5)
    on_item = acme.post(
        "/v1/feedback", {"conversation_id": conversation.id, "item_id": answer_item, "rating": "up"}
    ).json()
    assert (on_item["target_type"], on_item["target_id"], on_item["conversation_id"]) == (
        "conversation.item",
        answer_item,
        conversation.id,
    )

    assert acme.get(f"/v1/feedback/{first['id']}").json() == first
    listed = acme.get("/v1/feedback").json()
    assert [f["id"] for f in listed["data"]] == [on_item["id"], stars["id"], first["id"]]  # newest first
    assert (listed["first_id"], listed["last_id"], listed["has_more"]) == (on_item["id"], first["id"], False)
    page = acme.get("/v1/feedback", limit=1, order="asc").json()
    assert [f["id"] for f in page["data"]] == [first["id"]] and page["has_more"]
    after = acme.get("/v1/feedback", limit=5, order="asc", after=first["id"]).json()
    assert [f["id"] for f in after["data"]] == [stars["id"], on_item["id"]] and not after["has_more"]
    for filters, expected in (
        ({"rating": "5"}, [stars["id"]]),
        ({"rating": "down", "label": "wrong_fact"}, [first["id"]]),
        ({"target_type": "conversation.item"}, [on_item["id"]]),
        ({"conversation_id": conversation.id}, [on_item["id"]]),
        ({"target_id": completion}, [first["id"]]),
        ({"user": "end-user-1"}, [first["id"]]),
    ):
        assert [f["id"] for f in acme.get("/v1/feedback", **filters).json()["data"]] == expected, filters

    deleted = acme.delete(f"/v1/feedback/{stars['id']}")
    assert deleted.json() == {"id": stars["id"], "object": "feedback.deleted", "deleted": True}
    assert envelope(acme.get(f"/v1/feedback/{stars['id']}"), 404)["param"] == "feedback_id"
    envelope(acme.delete(f"/v1/feedback/{stars['id']}"), 404)


def test_another_tenant_finds_nothing(feedback_gateway: FeedbackGateway) -> None:
    acme, rival = feedback_gateway.caller("acme"), feedback_gateway.caller("rival")
    completion = feedback_gateway.completion(acme, "Q", "A")
    response = feedback_gateway.response(acme, "Q", "A")
    conversation = acme.client.conversations.create(
        items=[{"type": "message", "role": "user", "content": "Q"}]
    )
    item = acme.client.conversations.items.list(conversation.id).data[0].id
    mine = acme.post("/v1/feedback", {"completion_id": completion, "rating": "up"}).json()
    # The rival cannot rate the tenant's objects: the 404 of an id that does not exist.
    for body, param in (
        ({"completion_id": completion, "rating": "down"}, "completion_id"),
        ({"response_id": response, "rating": "down"}, "response_id"),
        ({"conversation_id": conversation.id, "item_id": item, "rating": "down"}, "conversation_id"),
        ({"completion_id": "chatcmpl-nope", "rating": "down"}, "completion_id"),
    ):
        assert envelope(rival.post("/v1/feedback", body), 404)["param"] == param
    # Nor read, list or delete its feedback.
    envelope(rival.get(f"/v1/feedback/{mine['id']}"), 404)
    envelope(rival.delete(f"/v1/feedback/{mine['id']}"), 404)
    assert rival.get("/v1/feedback").json()["data"] == []
    assert rival.get("/v1/feedback", after=mine["id"]).json()["data"] == []
    assert acme.get(f"/v1/feedback/{mine['id']}").status_code == 200
    # An item id the conversation does not hold.
    missing = acme.post(
        "/v1/feedback", {"conversation_id": conversation.id, "item_id": "msg_nope", "rating": 1}
    )
    assert envelope(missing, 404)["param"] == "item_id"
    envelope(httpx.get(feedback_gateway.url + "/v1/feedback"), 401)


def test_bad_bodies_are_openai_400s(feedback_gateway: FeedbackGateway) -> None:
    acme = feedback_gateway.caller("acme")
    completion = feedback_gateway.completion(acme, "Q", "A")
    cases: list[tuple[Any, str | None]] = [
        ({"rating": "up"}, "completion_id"),
        ({"completion_id": completion, "response_id": "resp_x", "rating": "up"}, None),
        ({"item_id": "msg_1", "rating": "up"}, "conversation_id"),
        ({"conversation_id": "conv_1", "rating": "up"}, "item_id"),
        ({"completion_id": completion}, "rating"),
        ({"completion_id": completion, "rating": 0}, "rating"),
        ({"completion_id": completion, "rating": 6}, "rating"),
        ({"completion_id": completion, "rating": "meh"}, "rating"),
        ({"completion_id": completion, "rating": True}, "rating"),
        ({"completion_id": completion, "rating": 4.5}, "rating"),
        ({"completion_id": completion, "label": ""}, "label"),
        ({"completion_id": completion, "label": "x" * 65}, "label"),
        ({"completion_id": completion, "rating": "up", "choice_index": 3}, "choice_index"),
        ({"completion_id": completion, "rating": "up", "metadata": {"k": 1}}, "metadata.k"),
        ({"completion_id": completion, "rating": "up", "surprise": 1}, "surprise"),
        (["not", "an", "object"], None),
    ]
    for body, param in cases:
        error = envelope(acme.post("/v1/feedback", body), 400)
        assert error["param"] == param, (body, error)
    for query in ({"limit": 0}, {"limit": 101}, {"order": "sideways"}, {"rating": "9"}, {"target_type": "x"}):
        envelope(acme.get("/v1/feedback", **query), 400)
    assert acme.get("/v1/feedback").json()["data"] == []


def test_the_admin_lists_every_tenants_feedback(feedback_gateway: FeedbackGateway) -> None:
    one, two = feedback_gateway.caller("one"), feedback_gateway.caller("two")
    ids = {}
    for caller in (one, two):
        completion = feedback_gateway.completion(caller, "Q", "A")
        ids[caller.tenant_id] = caller.post(
            "/v1/feedback", {"completion_id": completion, "label": "x"}
        ).json()["id"]
    admin = feedback_gateway.admin.http
    everyone = admin.get("/admin/feedback", params={"limit": 100, "label": "x"}).json()
    seen = {f["id"]: f["tenant_id"] for f in everyone["data"]}
    assert all(seen.get(fid) == tenant for tenant, fid in ids.items())
    only = admin.get("/admin/feedback", params={"tenant_id": one.tenant_id}).json()
    assert [f["id"] for f in only["data"]] == [ids[one.tenant_id]]
    envelope(httpx.get(feedback_gateway.url + "/admin/feedback"), 401)
    envelope(
        httpx.get(
            feedback_gateway.url + "/admin/feedback", headers={"authorization": f"Bearer {one.secret}"}
        ),
        401,
    )


def test_each_call_is_a_ledger_row(feedback_gateway: FeedbackGateway) -> None:
    caller: Caller = feedback_gateway.caller("ledger")
    completion = feedback_gateway.completion(caller, "Q", "A")
    caller.post("/v1/feedback", {"completion_id": completion, "rating": "up"})
    caller.get("/v1/feedback")
    envelope(caller.post("/v1/feedback", {"rating": "up"}), 400)
    rows = feedback_gateway.admin.usage(tenant_id=caller.tenant_id, group_by="tenant")
    assert rows[0]["requests"] == 3 and rows[0]["errors"] == 1
