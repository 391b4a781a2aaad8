"""Issue 16, point 10: realtime sessions are limited. A key may hold only so many sessions open
(and never more than its max_concurrent); a replica only so many in all; past a cap the handshake is
refused with a 429 in OpenAI's envelope before anything is allocated, and closing a session gives
its slot back. A session silent for the idle timeout while nothing runs is closed (1000, with the
reason), which frees its slot too."""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import websockets
from starlette.testclient import TestClient, WebSocketDenialResponse

from gateway import Settings, create_app
from tests.gateway.helpers import AdminClient
from tests.security.fake_engine import MODEL, FakeEngine
from tests.servers import ThreadedServer

PATH = f"/v1/realtime?model={MODEL}"


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
        assert refused(client, key) is None  # closing gave the slots back
        metrics = client.get("/metrics").text
    assert 'tantra_ratelimit_rejections_total{limit="realtime_sessions",scope="key"} 1.0' in metrics


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
