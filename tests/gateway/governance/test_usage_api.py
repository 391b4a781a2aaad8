"""The tenants' usage and costs API on a real gateway (its engine down: the ledger is the subject),
real Redis and a SQLite store of its own, ledger rows written through the store as the ledger
writes them: OpenAI's page and bucket shapes, group_by, filters, pagination, a tenant key scoped to
its tenant (its `project_ids` cannot widen that), the admin key seeing all, 400s in OpenAI's
envelope, and the usage request itself admitted and recorded in the ledger."""

from __future__ import annotations

import asyncio
import calendar
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from gateway import Settings, create_app
from gateway.store import Database, Store, UsageRow
from gateway.store.models import UsageRecord
from tests.gateway.helpers import AdminClient
from tests.servers import ThreadedServer

T0 = datetime(2026, 11, 1)
START = calendar.timegm(T0.timetuple())
DAY = 86_400


@pytest.fixture(scope="module")
def store_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('usage') / 'usage.db'}"


@pytest.fixture(scope="module")
def url(gateway_settings: Callable[..., Settings], store_url: str) -> Iterator[str]:
    settings = gateway_settings(connect_timeout_s=1, database_url=store_url)
    with ThreadedServer(create_app(settings)) as server:
        yield server.url


@pytest.fixture(scope="module")
def seeded(url: str, admin_key: str, store_url: str) -> dict[str, Any]:
    admin = AdminClient(url, admin_key)
    a, b = admin.tenant("usage-a"), admin.tenant("usage-b")
    a1_secret, a1 = admin.key(a["id"], "a1")
    _, a2 = admin.key(a["id"], "a2")
    _, b1 = admin.key(b["id"], "b1")
    admin.close()
    ids = {"a": a["id"], "b": b["id"], "a1": a1["id"], "a2": a2["id"], "b1": b1["id"], "secret": a1_secret}
    rows = [
        # tenant A: two chats on day 0 (one a batch line), one on day 1, a refused one (not counted)
        _row("r1", ids["a"], ids["a1"], "/v1/chat/completions", T0 + timedelta(hours=1), 10, 5, 1000, "m1"),
        _row(
            "batch_x-1", ids["a"], ids["a1"], "/v1/chat/completions", T0 + timedelta(hours=5), 4, 4, 500, "m1"
        ),
        _row(
            "r2",
            ids["a"],
            ids["a2"],
            "/v1/chat/completions",
            T0 + timedelta(days=1, hours=2),
            20,
            10,
            3000,
            "m2",
        ),
        _row(
            "r3",
            ids["a"],
            ids["a1"],
            "/v1/chat/completions",
            T0 + timedelta(hours=3),
            50,
            0,
            0,
            "m1",
            status=429,
        ),
        _row("r4", ids["a"], ids["a1"], "/v1/embeddings", T0 + timedelta(hours=2), 7, 0, 70, "emb"),
        _row("r5", ids["a"], ids["a1"], "/v1/moderations", T0 + timedelta(hours=2), 6, 0, 0, "omni"),
        _row("r6", ids["a"], ids["a1"], "/v1/audio/speech", T0 + timedelta(hours=2), 3, 0, 0, "tts"),
        _row(
            "r7",
            ids["a"],
            ids["a1"],
            "/v1/audio/transcriptions",
            T0 + timedelta(hours=2),
            0,
            0,
            0,
            "whisper",
            2.5,
        ),
        # tenant B: one big chat on day 0
        _row(
            "r8", ids["b"], ids["b1"], "/v1/chat/completions", T0 + timedelta(hours=1), 100, 100, 9000, "m1"
        ),
    ]

    async def write() -> None:
        database = Database(store_url)
        await Store(database).add_usage(rows)
        await database.close()

    asyncio.run(write())
    return ids


def _row(
    request_id: str,
    tenant: str,
    key: str,
    endpoint: str,
    at: datetime,
    prompt: int,
    completion: int,
    cost: int,
    model: str,
    seconds: float | None = None,
    *,
    status: int = 200,
) -> UsageRow:
    return UsageRow(
        created_at=at,
        request_id=request_id,
        tenant_id=tenant,
        key_id=key,
        model=model,
        endpoint=endpoint,
        stream=False,
        prompt_tokens=prompt,
        completion_tokens=completion,
        cost_micros=cost,
        latency_ms=10,
        status=status,
        outcome="completed" if status < 400 else "rejected",
        audio_seconds=seconds,
        served_model=model if status < 400 else None,
    )


def _get(url: str, secret: str, path: str, **params: Any) -> httpx.Response:
    return httpx.get(url + path, params=params, headers={"authorization": f"Bearer {secret}"}, timeout=30)


def test_completions_in_daily_buckets_scoped_to_the_tenant(url: str, seeded: dict[str, Any]) -> None:
    response = _get(
        url,
        seeded["secret"],
        "/v1/organization/usage/completions",
        start_time=START,
        end_time=START + 3 * DAY,
    )
    assert response.status_code == 200, response.text
    page = response.json()
    assert page["object"] == "page" and page["has_more"] is False and page["next_page"] is None
    assert [(b["object"], b["start_time"], b["end_time"]) for b in page["data"]] == [
        ("bucket", START + i * DAY, START + (i + 1) * DAY) for i in range(3)
    ]
    day0, day1, day2 = (bucket["results"] for bucket in page["data"])
    # tenant B's 100/100 tokens and the refused request are not there
    assert day0 == [
        {
            "object": "organization.usage.completions.result",
            "num_model_requests": 2,
            "input_tokens": 14,
            "output_tokens": 9,
            "input_cached_tokens": 0,
            "input_audio_tokens": 0,
            "output_audio_tokens": 0,
            "project_id": None,
            "api_key_id": None,
            "model": None,
            "batch": None,
        }
    ]
    assert day1[0]["input_tokens"] == 20 and day1[0]["output_tokens"] == 10
    assert day2 == []


def test_group_by_and_filters(url: str, seeded: dict[str, Any]) -> None:
    path, secret = "/v1/organization/usage/completions", seeded["secret"]
    grouped = _get(
        url,
        secret,
        path,
        start_time=START,
        end_time=START + 2 * DAY,
        **{"group_by[]": ["model", "api_key_id"]},
    )
    day0, day1 = (bucket["results"] for bucket in grouped.json()["data"])
    assert [(r["model"], r["api_key_id"], r["num_model_requests"]) for r in day0] == [("m1", seeded["a1"], 2)]
    assert [(r["model"], r["api_key_id"]) for r in day1] == [("m2", seeded["a2"])]
    batches = _get(url, secret, path, start_time=START, end_time=START + DAY, group_by="batch").json()
    split = {r["batch"]: r["input_tokens"] for r in batches["data"][0]["results"]}
    assert split == {True: 4, False: 10}
    only = _get(url, secret, path, start_time=START, end_time=START + DAY, batch="true").json()
    assert only["data"][0]["results"][0]["input_tokens"] == 4
    by_key = _get(
        url, secret, path, start_time=START, end_time=START + 2 * DAY, api_key_ids=seeded["a2"]
    ).json()
    assert [len(b["results"]) for b in by_key["data"]] == [0, 1]
    # a tenant key naming another tenant sees nothing of it
    other = _get(url, secret, path, start_time=START, end_time=START + DAY, project_ids=seeded["b"]).json()
    assert other["data"][0]["results"] == []


def test_pages_follow_next_page(url: str, seeded: dict[str, Any]) -> None:
    path, secret = "/v1/organization/usage/completions", seeded["secret"]
    first = _get(url, secret, path, start_time=START, end_time=START + 3 * DAY, limit=2).json()
    assert len(first["data"]) == 2 and first["has_more"] is True
    second = _get(
        url, secret, path, start_time=START, end_time=START + 3 * DAY, limit=2, page=first["next_page"]
    ).json()
    assert [b["start_time"] for b in second["data"]] == [START + 2 * DAY]
    assert second["has_more"] is False
    hourly = _get(url, secret, path, start_time=START, bucket_width="1h").json()
    assert len(hourly["data"]) == 24 and hourly["has_more"] is True  # default page: 24 hours
    assert hourly["data"][1]["results"][0]["input_tokens"] == 10


def test_other_kinds(url: str, seeded: dict[str, Any]) -> None:
    secret, span = seeded["secret"], {"start_time": START, "end_time": START + DAY}
    embeddings = _get(url, secret, "/v1/organization/usage/embeddings", **span).json()["data"][0]["results"]
    assert embeddings[0]["object"] == "organization.usage.embeddings.result"
    assert (embeddings[0]["input_tokens"], embeddings[0]["num_model_requests"]) == (7, 1)
    moderations = _get(url, secret, "/v1/organization/usage/moderations", **span).json()["data"][0]["results"]
    assert (
        moderations[0]["object"] == "organization.usage.moderations.result"
        and moderations[0]["input_tokens"] == 6
    )
    heard = _get(url, secret, "/v1/organization/usage/audio_transcriptions", **span).json()["data"][0][
        "results"
    ]
    assert (
        heard[0]["object"] == "organization.usage.audio_transcriptions.result" and heard[0]["seconds"] == 2.5
    )
    spoken = _get(url, secret, "/v1/organization/usage/audio_speeches", **span).json()["data"][0]["results"]
    assert (
        spoken[0]["object"] == "organization.usage.audio_speeches.result"
        and spoken[0]["num_model_requests"] == 1
    )


def test_costs(url: str, seeded: dict[str, Any], admin_key: str) -> None:
    span = {"start_time": START, "end_time": START + 2 * DAY}
    mine = _get(url, seeded["secret"], "/v1/organization/costs", **span).json()
    day0 = mine["data"][0]["results"]
    # 1000 + 500 (chats) + 70 (embeddings) micro-dollars; tenant B's 9000 is not the caller's
    assert day0 == [
        {
            "object": "organization.costs.result",
            "amount": {"value": 0.00157, "currency": "usd"},
            "project_id": None,
            "line_item": None,
        }
    ]
    items = _get(url, seeded["secret"], "/v1/organization/costs", group_by="line_item", **span).json()
    assert {r["line_item"]: r["amount"]["value"] for r in items["data"][0]["results"]} == {
        "m1": 0.0015,
        "emb": 0.00007,
        "omni": 0.0,
        "tts": 0.0,
        "whisper": 0.0,
    }
    everyone = _get(url, admin_key, "/v1/organization/costs", group_by="project_id", **span).json()
    totals = {r["project_id"]: r["amount"]["value"] for r in everyone["data"][0]["results"]}
    assert totals[seeded["a"]] == 0.00157 and totals[seeded["b"]] == 0.009
    only_b = _get(
        url, admin_key, "/v1/organization/usage/completions", project_ids=seeded["b"], **span
    ).json()
    assert only_b["data"][0]["results"][0]["input_tokens"] == 100


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({}, "start_time"),
        ({"start_time": "soon"}, "start_time"),
        ({"start_time": START, "bucket_width": "2d"}, "bucket_width"),
        ({"start_time": START, "group_by": "user_id"}, "group_by"),
        ({"start_time": START, "limit": 32}, "limit"),
        ({"start_time": START, "end_time": START}, "end_time"),
        ({"start_time": START, "page": "page_%%%"}, "page"),
        ({"start_time": START, "page": "page_OTk5OTk5OTk5OTk5OTk5"}, "page"),
        ({"start_time": 10**18}, "start_time"),
        ({"start_time": START, "end_time": 10**18}, "end_time"),
    ],
)
def test_bad_queries_are_400s_in_openais_envelope(
    url: str, seeded: dict[str, Any], params: dict[str, Any], param: str
) -> None:
    response = _get(url, seeded["secret"], "/v1/organization/usage/completions", **params)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param


def test_costs_are_daily_and_keys_are_needed(url: str, seeded: dict[str, Any]) -> None:
    hourly = _get(url, seeded["secret"], "/v1/organization/costs", start_time=START, bucket_width="1h")
    assert hourly.status_code == 400 and hourly.json()["error"]["param"] == "bucket_width"
    assert httpx.get(url + "/v1/organization/costs", params={"start_time": START}).status_code == 401
    assert _get(url, seeded["secret"], "/v1/organization/usage/images", start_time=START).status_code == 404


def test_the_usage_request_is_itself_in_the_ledger(url: str, seeded: dict[str, Any], store_url: str) -> None:
    assert (
        _get(url, seeded["secret"], "/v1/organization/usage/embeddings", start_time=START).status_code == 200
    )

    async def mine() -> list[str]:
        database = Database(store_url)
        async with database.engine.connect() as conn:
            found = await conn.execute(select(UsageRecord.endpoint).where(UsageRecord.key_id == seeded["a1"]))
            endpoints = [row[0] for row in found]
        await database.close()
        return endpoints

    deadline = time.monotonic() + 10
    while "GET /v1/organization/usage/embeddings" not in asyncio.run(mine()):
        assert time.monotonic() < deadline, "the usage request never reached the ledger"
        time.sleep(0.2)
