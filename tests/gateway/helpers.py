"""What gateway tests share: the admin API as a client, and checks of OpenAI's error envelope."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import httpx
import openai

T = TypeVar("T")


class AdminClient:
    """The admin API of one gateway, with its admin key."""

    def __init__(self, base_url: str, admin_key: str) -> None:
        self.http = httpx.Client(
            base_url=base_url, headers={"authorization": f"Bearer {admin_key}"}, timeout=30
        )

    def tenant(self, name: str, **limits: Any) -> dict[str, Any]:
        response = self.http.post("/admin/tenants", json={"name": name, **limits})
        assert response.status_code == 201, response.text
        return dict(response.json())

    def key(self, tenant_id: str, name: str = "", **fields: Any) -> tuple[str, dict[str, Any]]:
        """(secret, key record)."""
        response = self.http.post("/admin/keys", json={"tenant_id": tenant_id, "name": name, **fields})
        assert response.status_code == 201, response.text
        body = dict(response.json())
        return body.pop("key"), body

    def patch_key(self, key_id: str, **fields: Any) -> dict[str, Any]:
        response = self.http.patch(f"/admin/keys/{key_id}", json=fields)
        assert response.status_code == 200, response.text
        return dict(response.json())

    def patch_tenant(self, tenant_id: str, **fields: Any) -> dict[str, Any]:
        response = self.http.patch(f"/admin/tenants/{tenant_id}", json=fields)
        assert response.status_code == 200, response.text
        return dict(response.json())

    def rotate(self, key_id: str, grace_seconds: float = 0) -> str:
        response = self.http.post(f"/admin/keys/{key_id}/rotate", json={"grace_seconds": grace_seconds})
        assert response.status_code == 200, response.text
        return str(response.json()["key"])

    def revoke(self, key_id: str) -> None:
        response = self.http.post(f"/admin/keys/{key_id}/revoke")
        assert response.status_code == 200, response.text

    def usage(self, **params: Any) -> list[dict[str, Any]]:
        response = self.http.get("/admin/usage", params=params)
        assert response.status_code == 200, response.text
        return list(response.json()["data"])

    def close(self) -> None:
        self.http.close()


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def envelope(response: httpx.Response, status: int) -> dict[str, Any]:
    """The error of an OpenAI envelope, after checking status, content type and shape."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers.get("x-request-id")
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert "Traceback" not in body["error"]["message"]
    return dict(body["error"])


def wait_for(predicate: Any, timeout: float = 10.0, interval: float = 0.05) -> float:
    """Seconds until `predicate()` is true, or fail."""
    start = time.monotonic()
    while not predicate():
        assert time.monotonic() - start < timeout, "condition not reached in time"
        time.sleep(interval)
    return time.monotonic() - start


def poll(fetch: Callable[[], T], done: Callable[[T], bool], timeout: float, interval: float = 0.5) -> T:
    """`fetch()` again until `done` holds for what it returns (returned), or fail showing the last."""
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if done(value):
            return value
        assert time.monotonic() < deadline, f"still not done: {value}"
        time.sleep(interval)


def ledger_now(database_url: str, key_id: str) -> list[Any]:
    """The ledger's rows for a key as they are now, read from the store."""
    import asyncio

    from gateway.store import Database, Store

    async def read() -> list[Any]:
        database = Database(database_url)
        try:
            return await Store(database).usage_rows(key_id=key_id)
        finally:
            await database.close()

    return asyncio.run(read())


def ledger_rows(database_url: str, key_id: str, count: int, timeout: float = 10.0) -> list[Any]:
    """The ledger's rows for a key, once there are `count` of them (the ledger writes in batches)."""
    deadline = time.monotonic() + timeout
    while True:
        rows = ledger_now(database_url, key_id)
        if len(rows) >= count or time.monotonic() > deadline:
            assert len(rows) == count, f"{len(rows)} ledger rows, expected {count}"
            return rows
        time.sleep(0.1)


def greedy_token_ids(client: openai.OpenAI, model: str, content: Any, max_tokens: int) -> list[int]:
    """vLLM's greedy token ids for one user turn of `content` (its `return_tokens_as_token_ids`
    logprobs), end of sequence ignored: what the greedy-equality tests compare."""
    answer = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": content}],
        temperature=0,
        max_tokens=max_tokens,
        logprobs=True,
        extra_body={"return_tokens_as_token_ids": True, "ignore_eos": True},
    )
    logprobs = answer.choices[0].logprobs
    assert logprobs is not None and logprobs.content is not None
    return [int(item.token.removeprefix("token_id:")) for item in logprobs.content]
