"""PII redaction of background responses (`background: true`, issue 21 point 4) through a real
gateway (in process; real Redis, its own SQLite store, the real job runner, the real Presidio and
spaCy model) with a fake engine, as in test_pii_gateway.py: the engine must stream an answer whose
PII is split over several deltas, which the test chooses.

Under a tenant's `store` policy the stored response (input items and body), its stream events (the
text deltas, held until each part is whole, and the `.done` and lifecycle events) and its job's
payload hold placeholders; a tenant without a policy keeps its text as it was."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from gateway import Settings, create_app
from tests.gateway.helpers import AdminClient
from tests.gateway.pii.test_pii_gateway import MODEL, PiiGateway, Tenant
from tests.servers import ThreadedServer

PROMPT = "I am at jane.doe@example.com or 212-555-0198, write back."
ANSWER = "Noted: jane.doe@example.com and 212-555-0198."
# The answer as the engine streams it: the address and the number each split over two deltas.
PIECES = ["Noted: jane.", "doe@example", ".com and 212-", "555-0198."]
STORED_ANSWER = "Noted: <EMAIL_ADDRESS> and <PHONE_NUMBER>."


def _response(status: str, text: str | None) -> dict[str, Any]:
    content = [] if text is None else [{"type": "output_text", "text": text, "annotations": []}]
    output = [
        {"type": "message", "id": "msg_1", "role": "assistant", "status": "completed", "content": content}
    ]
    return {
        "id": "resp_engine",
        "object": "response",
        "created_at": 1,
        "status": status,
        "model": MODEL,
        "output": output if text is not None else [],
        "usage": {"input_tokens": 20, "output_tokens": 9, "total_tokens": 29} if text else None,
    }


def _stream() -> bytes:
    at = {"item_id": "msg_1", "output_index": 0, "content_index": 0}
    part = {"type": "output_text", "text": ANSWER, "annotations": []}
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": _response("in_progress", None)},
        {"type": "response.in_progress", "response": _response("in_progress", None)},
        *({"type": "response.output_text.delta", **at, "delta": piece} for piece in PIECES),
        {"type": "response.output_text.done", **at, "text": ANSWER},
        {"type": "response.content_part.done", **at, "part": part},
        {"type": "response.completed", "response": _response("completed", ANSWER)},
    ]
    frames = []
    for n, event in enumerate(events):
        event["sequence_number"] = n
        frames.append(f"event: {event['type']}\ndata: ".encode() + orjson.dumps(event) + b"\n\n")
    return b"".join(frames)


class _Frames(httpx.AsyncByteStream):
    """The engine's stream, event by event, as a live SSE body arrives (a body given whole is read
    by httpx at once and cannot be streamed again)."""

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for frame in _stream().split(b"\n\n")[:-1]:
            yield frame + b"\n\n"


def _engine(request: httpx.Request) -> httpx.Response:
    if request.url.path == "/v1/models":
        return httpx.Response(200, json={"data": [{"id": MODEL, "max_model_len": 4096}]})
    if request.url.path == "/v1/responses":
        return httpx.Response(200, stream=_Frames(), headers={"content-type": "text/event-stream"})
    return httpx.Response(200, json={})  # /health and the like


@pytest.fixture(scope="module")
def background_gateway(
    gateway_settings: Callable[..., Settings], admin_key: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[PiiGateway, Path]]:
    tmp = tmp_path_factory.mktemp("pii-background")
    database = tmp / "store.db"
    settings = gateway_settings(
        database_url=f"sqlite+aiosqlite:///{database}",
        blob_dir=tmp / "blobs",
        pii_policy_cache_s=0,
        responses_events_flush_s=0.05,
        responses_stream_poll_s=0.05,
    )
    app = create_app(settings, http_client=httpx.AsyncClient(transport=httpx.MockTransport(_engine)))
    with ThreadedServer(app) as server:
        admin = AdminClient(server.url, admin_key)
        yield PiiGateway(server.url, admin, []), database
        admin.close()


def _finished(tenant: Tenant, url: str) -> dict[str, Any]:
    made = tenant.post(url, "/v1/responses", {"model": MODEL, "input": PROMPT, "background": True})
    assert made.status_code == 200, made.text
    assert made.json()["status"] == "queued"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        got = tenant.get(url, f"/v1/responses/{made.json()['id']}").json()
        if got["status"] not in ("queued", "in_progress"):
            return dict(got)
        time.sleep(0.1)
    raise AssertionError("the background response did not finish")


def _rows(database: Path, response_id: str) -> tuple[list[dict[str, Any]], str, str]:
    """Its stored events, and the raw text of its row and of its job's row."""
    with sqlite3.connect(database) as db:
        events = [
            orjson.loads(raw)
            for (raw,) in db.execute(
                "SELECT event FROM response_events WHERE response_id = ? ORDER BY sequence", (response_id,)
            )
        ]
        row = db.execute(
            "SELECT input_items, body, job_id FROM responses WHERE id = ?", (response_id,)
        ).fetchone()
        job = db.execute("SELECT payload FROM jobs WHERE id = ?", (row[2],)).fetchone()
    return events, f"{row[0]} {row[1]}", str(job[0])


def test_a_store_policy_redacts_a_background_response(background_gateway: tuple[PiiGateway, Path]) -> None:
    gateway, database = background_gateway
    tenant = gateway.tenant("background", store=True)
    done = _finished(tenant, gateway.url)
    assert done["status"] == "completed", done
    # The answer is read back from the store: redacted, the address and the number whole.
    assert done["output"][0]["content"][0]["text"] == STORED_ANSWER
    items = tenant.get(gateway.url, f"/v1/responses/{done['id']}/input_items").json()["data"]
    assert [part["text"] for item in items for part in item["content"]] == [
        "I am at <EMAIL_ADDRESS> or <PHONE_NUMBER>, write back."
    ]
    events, row, payload = _rows(database, done["id"])
    # The four deltas were held until the part was whole, and stored as one, redacted.
    deltas = [e["delta"] for e in events if e["type"] == "response.output_text.delta"]
    assert deltas == [STORED_ANSWER]
    assert [e["text"] for e in events if e["type"] == "response.output_text.done"] == [STORED_ANSWER]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    for stored in (orjson.dumps(events).decode(), row, payload):
        assert "jane.doe" not in stored and "555-0198" not in stored and "<EMAIL_ADDRESS>" in stored
    # The stream replayed from the store is the stored one.
    streamed = httpx.get(
        f"{gateway.url}/v1/responses/{done['id']}",
        params={"stream": "true"},
        headers={"authorization": f"Bearer {tenant.secret}"},
        timeout=30,
    )
    assert streamed.status_code == 200 and "jane.doe" not in streamed.text and STORED_ANSWER in streamed.text


def test_without_a_policy_a_background_response_is_kept_as_it_was(
    background_gateway: tuple[PiiGateway, Path],
) -> None:
    gateway, database = background_gateway
    tenant = gateway.tenant("background-plain")
    done = _finished(tenant, gateway.url)
    assert done["output"][0]["content"][0]["text"] == ANSWER
    events, row, payload = _rows(database, done["id"])
    assert [e["delta"] for e in events if e["type"] == "response.output_text.delta"] == PIECES
    assert "jane.doe@example.com" in row and "jane.doe@example.com" in payload
