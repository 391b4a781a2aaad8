"""Issue 16, point 10: realtime sessions are limited. A key may hold only so many sessions open
(and never more than its max_concurrent); a replica only so many in all; past a cap the handshake is
refused with a 429 in OpenAI's envelope before anything is allocated, and closing a session gives
its slot back. A session silent for the idle timeout while nothing runs is closed (1000, with the
reason), which frees its slot too.

The per-key cap and a session's concurrency slot are counted in Redis, so they hold across replicas:
two replicas together cannot open more than the key's cap, and an open session holds one of the key's
`max_concurrent` slots (a plain request is refused while it is open) while the session's own model
calls run under that slot. A slot is a lease renewed while the session lasts and freed at its close.

The settings these tests set are ignored by a gateway that does not know them (extra="ignore"), so
the file runs unchanged on an older commit and fails there by assertion."""

from __future__ import annotations

import asyncio
import base64
import re
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import websockets
from starlette.testclient import TestClient, WebSocketDenialResponse, WebSocketTestSession

from gateway import Settings, create_app
from gateway.clients import redis_client
from gateway.errors import RateLimited
from gateway.limits import RateLimiter, Scope
from gateway.store import Limits
from tests.gateway.helpers import AdminClient
from tests.security.fake_engine import MODEL, FakeEngine
from tests.servers import ThreadedServer
from tests.services import RedisServer

PATH = f"/v1/realtime?model={MODEL}"
REFUSALS = r'tantra_ratelimit_rejections_total\{limit="realtime_sessions",scope="key"\} (\S+)'


@pytest.fixture(scope="module")
def engine_url() -> Iterator[str]:
    with ThreadedServer(FakeEngine().app) as server:
        yield server.url


def key_of(client: TestClient, admin_key: str, **limits: Any) -> dict[str, str]:
    admin = {"authorization": f"Bearer {admin_key}"}
    tenant = client.post("/admin/tenants", json={"name": f"rt-{uuid.uuid4().hex}"}, headers=admin)
    key = client.post("/admin/keys", json={"tenant_id": tenant.json()["id"], **limits}, headers=admin)
    assert key.status_code == 201, key.text
    return {"authorization": f"Bearer {key.json()['key']}"}


def refused(client: TestClient, headers: dict[str, str]) -> Any:
    """The denial of a handshake that should be refused (None when the session opened)."""
    try:
        with client.websocket_connect(PATH, headers=headers) as socket:
            socket.receive_json()
    except WebSocketDenialResponse as denial:
        return denial
    return None


def test_a_key_holds_at_most_its_cap_of_sessions(
    gateway_settings: Callable[..., Settings], engine_url: str, admin_key: str
) -> None:
    app = create_app(gateway_settings(engine_url=engine_url, realtime_max_sessions_per_key=2))
    with TestClient(app) as client:
        key = key_of(client, admin_key)
        other = key_of(client, admin_key)
        with (
            client.websocket_connect(PATH, headers=key) as first,
            client.websocket_connect(PATH, headers=key) as second,
        ):
            assert first.receive_json()["type"] == second.receive_json()["type"] == "session.created"
            denial = refused(client, key)
            assert denial is not None, "a third session of the key was opened"
            assert denial.status_code == 429
            assert denial.json()["error"]["code"] == "too_many_realtime_sessions"
            assert refused(client, other) is None  # another key is not affected
        assert eventually(lambda: refused(client, key) is None)  # closing gave the slots back
        metrics = client.get("/metrics").text
    # At least the one refusal above: `eventually` may be refused again while the slot is freed.
    counted = re.search(
        r'tantra_ratelimit_rejections_total\{limit="realtime_sessions",scope="key"\} (\S+)', metrics
    )
    assert counted is not None and float(counted.group(1)) >= 1.0, metrics[-3000:]


def test_a_session_counts_against_the_keys_concurrency(
    gateway_settings: Callable[..., Settings], engine_url: str, admin_key: str
) -> None:
    app = create_app(gateway_settings(engine_url=engine_url))
    with TestClient(app) as client:
        key = key_of(client, admin_key, max_concurrent=1)
        with client.websocket_connect(PATH, headers=key) as first:
            assert first.receive_json()["type"] == "session.created"
            denial = refused(client, key)
            assert denial is not None and denial.status_code == 429


def test_a_replica_holds_at_most_its_cap_of_sessions(
    gateway_settings: Callable[..., Settings], engine_url: str, admin_key: str
) -> None:
    app = create_app(gateway_settings(engine_url=engine_url, realtime_max_sessions=1))
    with TestClient(app) as client:
        one, two = key_of(client, admin_key), key_of(client, admin_key)
        with client.websocket_connect(PATH, headers=one) as first:
            assert first.receive_json()["type"] == "session.created"
            denial = refused(client, two)
            assert denial is not None and denial.status_code == 429


async def test_an_idle_session_is_closed_and_frees_its_slot(
    gateway_settings: Callable[..., Settings], engine_url: str, admin_key: str
) -> None:
    settings = gateway_settings(
        engine_url=engine_url, realtime_idle_timeout_s=0.5, realtime_max_sessions_per_key=1
    )
    with ThreadedServer(create_app(settings)) as server:
        admin = AdminClient(server.url, admin_key)
        secret, _ = admin.key(admin.tenant(f"rt-{uuid.uuid4().hex}")["id"])
        url = server.url.replace("http://", "ws://") + PATH
        headers = {"authorization": f"Bearer {secret}"}
        async with websockets.connect(url, additional_headers=headers) as connection:
            await connection.recv()  # session.created
            try:
                await asyncio.wait_for(connection.recv(), 10)
            except websockets.ConnectionClosed:
                pass
            except TimeoutError:
                pass
            code, reason = connection.close_code, connection.close_reason
        assert code == 1000, f"the idle session was not closed by the gateway (close code {code})"
        assert "idle" in (reason or "")


def test_a_session_buffers_at_most_a_minute_of_audio_by_default(
    gateway_settings: Callable[..., Settings], engine_url: str, admin_key: str
) -> None:
    # pcm16 at 24 kHz: 48,000 bytes a second; 61 s of silence in one append.
    audio = base64.b64encode(bytes(48_000 * 61)).decode()
    app = create_app(gateway_settings(engine_url=engine_url))
    with (
        TestClient(app) as client,
        client.websocket_connect(PATH, headers=key_of(client, admin_key)) as socket,
    ):
        assert socket.receive_json()["type"] == "session.created"
        socket.send_json({"type": "input_audio_buffer.append", "audio": audio})
        socket.send_json({"type": "input_audio_buffer.clear", "event_id": "after"})
        answer = socket.receive_json()
    assert answer["type"] == "error", answer
    assert answer["error"]["code"] == "input_audio_buffer_full"


def eventually(condition: Callable[[], bool], within_s: float = 5.0) -> bool:
    """True once `condition` holds: TestClient cancels a closed session's handler, whose slots are
    then freed by a task of their own a moment later."""
    deadline = time.monotonic() + within_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def chat(client: TestClient, headers: dict[str, str]) -> Any:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    return client.post("/v1/chat/completions", json=body, headers=headers)


def answer(socket: WebSocketTestSession) -> dict[str, Any]:
    """One text response of an open session, run to its end: its response.done event."""
    socket.send_json({"type": "session.update", "session": {"modalities": ["text"]}})
    item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}
    socket.send_json({"type": "conversation.item.create", "item": item})
    socket.send_json({"type": "response.create"})
    while (event := socket.receive_json())["type"] != "response.done":
        assert event["type"] != "error", event
    return dict(event["response"])


def test_the_key_session_cap_holds_across_replicas(
    gateway_settings: Callable[..., Settings], engine_url: str, admin_key: str
) -> None:
    settings = gateway_settings(engine_url=engine_url, realtime_max_sessions_per_key=1)
    with TestClient(create_app(settings)) as one, TestClient(create_app(settings)) as two:
        key = key_of(one, admin_key)
        with one.websocket_connect(PATH, headers=key) as first:
            assert first.receive_json()["type"] == "session.created"
            denial = refused(two, key)
            assert denial is not None, "a second replica opened a session past the key's cap of 1"
            assert denial.status_code == 429
            assert denial.json()["error"]["code"] == "too_many_realtime_sessions"
        # The first session's close freed the key's session slot.
        assert eventually(lambda: refused(two, key) is None)
        metrics = two.get("/metrics").text
    # At least the one refusal above: `eventually` may be refused again while the slot is freed.
    counted = re.search(
        r'tantra_ratelimit_rejections_total\{limit="realtime_sessions",scope="key"\} (\S+)', metrics
    )
    assert counted is not None and float(counted.group(1)) >= 1.0, metrics[-3000:]


def test_a_session_takes_a_concurrency_slot_its_own_calls_run_under(
    gateway_settings: Callable[..., Settings], engine_url: str, admin_key: str
) -> None:
    # A one-second lease: the session outlives it, renewed by the heartbeat.
    settings = gateway_settings(engine_url=engine_url, limits_lease_s=1)
    with TestClient(create_app(settings)) as one, TestClient(create_app(settings)) as two:
        key = key_of(one, admin_key, max_concurrent=1)
        assert chat(two, key).status_code == 200  # the fake engine answers
        with one.websocket_connect(PATH, headers=key) as session:
            assert session.receive_json()["type"] == "session.created"
            for replica in (one, two):
                busy = chat(replica, key)
                assert busy.status_code == 429, "admitted while the key's only slot is a session's"
                assert busy.json()["error"]["code"] == "rate_limit_exceeded"
            # The session's own model call runs under its slot, not starved by it.
            response = answer(session)
            assert response["status"] == "completed", response
            assert response["output"][0]["content"][0]["text"] == "ok"
            time.sleep(2.5)  # past two leases: the heartbeat keeps the session's slot
            assert chat(two, key).status_code == 429, "the session's slot expired while it was open"
        assert eventually(lambda: chat(two, key).status_code == 200)  # closing gave the slot back


async def test_a_dead_replicas_session_slots_return_within_the_lease(
    redis_server: RedisServer, admin_key: str
) -> None:
    redis = redis_client(Settings(redis_url=redis_server.url, admin_key=admin_key))
    try:
        dead, alive = (
            RateLimiter(redis, window_s=60, lease_s=1, failure_mode="open", seed=_no_ledger, prefix="rt")
            for _ in range(2)
        )
        scopes = [Scope("key", f"k-{uuid.uuid4().hex}", Limits(max_concurrent=1))]
        hold = getattr(dead, "hold_session", None)
        assert hold is not None, "a session holds no lease in Redis"
        await hold(scopes, 1)
        await dead.close()  # the replica dies: no settlement, no more renewals
        with pytest.raises(RateLimited):
            await alive.hold_session(scopes, 1)
        await asyncio.sleep(1.5)
        await alive.settle(await alive.hold_session(scopes, 1), tokens=0)
    finally:
        await redis.aclose()


async def _no_ledger(*_: Any) -> tuple[int, int]:
    return 0, 0


@pytest.mark.parametrize("mode", ["open", "closed"])
def test_with_redis_down_sessions_follow_the_failure_policy(
    gateway_settings: Callable[..., Settings], engine_url: str, admin_key: str, mode: str
) -> None:
    with RedisServer() as own:
        settings = gateway_settings(
            engine_url=engine_url,
            redis_url=own.url,
            limits_failure_mode=mode,
            realtime_max_sessions_per_key=1,
        )
        with TestClient(create_app(settings)) as client:
            key = key_of(client, admin_key)
            assert refused(client, key) is None  # the key is cached now
            own.kill()
            if mode == "closed":
                denial = refused(client, key)
                assert denial is not None and denial.status_code == 503, "opened without Redis"
                return
            # Open: this replica's own caps still hold.
            with client.websocket_connect(PATH, headers=key) as first:
                assert first.receive_json()["type"] == "session.created"
                denial = refused(client, key)
                assert denial is not None and denial.status_code == 429
