"""Issue 27, point 2: a WebRTC call is a realtime session: it takes the same slots as a WebSocket
session (the key's cap counts both), a replica answers at most `realtime_webrtc_max_calls`, and a
hung-up call gives its slot back. The offers are real aiortc offers; no client connects, so the
calls only hold their slots until hung up (the media path is tests/gateway/realtime's)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from aiortc import RTCPeerConnection
from aiortc.mediastreams import AudioStreamTrack
from starlette.testclient import TestClient

from gateway import Settings, create_app
from tests.security.fake_engine import MODEL, FakeEngine
from tests.security.test_realtime_sessions import eventually, key_of, refused
from tests.servers import ThreadedServer

CALLS = f"/v1/realtime/calls?model={MODEL}"


@pytest.fixture(scope="module")
def engine_url() -> Iterator[str]:
    with ThreadedServer(FakeEngine().app) as server:
        yield server.url


@pytest.fixture(scope="module")
def sdp_offer() -> str:
    async def make() -> str:
        pc = RTCPeerConnection()
        pc.createDataChannel("oai-events")
        pc.addTrack(AudioStreamTrack())
        await pc.setLocalDescription(await pc.createOffer())
        sdp = str(pc.localDescription.sdp)
        await pc.close()
        return sdp

    return asyncio.run(make())


def call(client: TestClient, key: dict[str, str], offer: str) -> Any:
    return client.post(CALLS, content=offer, headers={**key, "content-type": "application/sdp"})


def test_calls_and_sockets_share_the_keys_session_cap(
    gateway_settings: Callable[..., Settings], engine_url: str, admin_key: str, sdp_offer: str
) -> None:
    app = create_app(gateway_settings(engine_url=engine_url, realtime_max_sessions_per_key=1))
    with TestClient(app) as client:
        key = key_of(client, admin_key)
        with client.websocket_connect(f"/v1/realtime?model={MODEL}", headers=key) as socket:
            assert socket.receive_json()["type"] == "session.created"
            busy = call(client, key, sdp_offer)
            assert busy.status_code == 429, busy.text
            assert busy.json()["error"]["code"] == "too_many_realtime_sessions"
        answers: list[Any] = []

        def answered() -> bool:
            answers.append(call(client, key, sdp_offer))
            return bool(answers[-1].status_code == 201)

        assert eventually(answered)  # the socket's slot is freed a moment after it closes
        location = answers[-1].headers["location"]
        denial = refused(client, key)
        assert denial is not None and denial.status_code == 429, "the call held no session slot"
        other = key_of(client, admin_key)
        assert client.post(f"{location}/hangup", headers=other).status_code == 404
        assert client.post(f"{location}/hangup", headers=key).status_code == 200
        assert eventually(lambda: refused(client, key) is None)  # hung up: the slot is back


def test_a_replica_answers_at_most_its_cap_of_calls(
    gateway_settings: Callable[..., Settings], engine_url: str, admin_key: str, sdp_offer: str
) -> None:
    app = create_app(gateway_settings(engine_url=engine_url, realtime_webrtc_max_calls=1))
    with TestClient(app) as client:
        first = call(client, key_of(client, admin_key), sdp_offer)
        assert first.status_code == 201, first.text
        second = call(client, key_of(client, admin_key), sdp_offer)
        assert second.status_code == 429
        assert second.json()["error"]["code"] == "too_many_realtime_sessions"
