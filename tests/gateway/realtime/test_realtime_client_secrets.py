"""Ephemeral client secrets of the Realtime API (`ek_...`) against the real gateway, engine and Redis:
minted with the openai SDK (GA `client.realtime.client_secrets`, beta `client.beta.realtime.sessions`),
then a WebRTC call (aiortc) and a WebSocket (the SDK) opened with them and answered; refused by
every other route, checked when minted, kept in Redis with their lifetime as the TTL."""

from __future__ import annotations

import asyncio
import hashlib
import time

import httpx
import openai
import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription
from redis.asyncio import Redis

from tests.gateway.realtime.test_realtime_webrtc import Call, Microphone, offer
from tests.services import RedisServer

pytestmark = pytest.mark.engine


def sdk(gateway_url: str, key: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=gateway_url + "/v1",
        websocket_base_url=gateway_url.replace("http://", "ws://") + "/v1",
        api_key=key,
        max_retries=0,
    )


async def test_a_client_secret_opens_a_webrtc_call_with_its_session(
    gateway_url: str, model: str, api_key: str
) -> None:
    minting = sdk(gateway_url, api_key)
    secret = await minting.realtime.client_secrets.create(
        expires_after={"anchor": "created_at", "seconds": 300},
        session={
            "type": "realtime",
            "model": model,
            "instructions": "Be brief.",
            "output_modalities": ["text"],
            "max_output_tokens": 8,
        },
    )
    await minting.close()
    assert secret.value.startswith("ek_")
    assert 280 <= secret.expires_at - time.time() <= 301
    assert secret.session.type == "realtime"
    assert secret.session.model == model and secret.session.instructions == "Be brief."
    pc = RTCPeerConnection()
    call = Call(pc)
    pc.addTrack(Microphone(b""))  # silence: the turn is typed
    as_secret = {"authorization": f"Bearer {secret.value}"}
    async with httpx.AsyncClient(base_url=gateway_url, headers=as_secret, timeout=60) as http:
        answer = await http.post(
            "/v1/realtime/calls", content=await offer(pc), headers={"content-type": "application/sdp"}
        )
        assert answer.status_code == 201, answer.text
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer.text, type="answer"))
        await asyncio.wait_for(call.open.wait(), 30)
        # The secret's session is the call's: its first session.update, in GA's shape.
        updated = await call.until("session.updated")
        assert updated["session"]["type"] == "realtime"
        assert updated["session"]["instructions"] == "Be brief."
        assert updated["session"]["max_output_tokens"] == 8
        call.send(
            {
                "type": "conversation.item.create",
                "item": {
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": "Hi!"}],
                },
            }
        )
        call.send({"type": "response.create"})
        # Answered by the engine as the key that minted the secret (the secret opens no other route).
        done = await call.until("response.done")
        assert done["response"]["status"] in ("completed", "incomplete"), done
        assert done["response"]["output"][0]["content"][0]["type"] == "output_text"
        hung_up = await http.post(f"{answer.headers['location']}/hangup")
        assert hung_up.status_code == 200, hung_up.text
    await pc.close()


async def test_a_beta_session_secret_opens_a_websocket(gateway_url: str, model: str, api_key: str) -> None:
    minting = sdk(gateway_url, api_key)
    created = await minting.beta.realtime.sessions.create(
        model=model,  # type: ignore[arg-type]
        modalities=["text"],
        instructions="Answer in one word.",
        client_secret={"expires_after": {"anchor": "created_at", "seconds": 120}},
    )
    await minting.close()
    assert created.client_secret.value.startswith("ek_")
    assert 100 <= created.client_secret.expires_at - time.time() <= 121
    client = sdk(gateway_url, created.client_secret.value)
    async with client.beta.realtime.connect(model=model) as connection:
        updated = await connection.recv()
        while updated.type != "session.updated":
            updated = await connection.recv()
        assert updated.session.instructions == "Answer in one word."
        assert updated.session.modalities == ["text"]
        await connection.conversation.item.create(
            item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hello!"}]}
        )
        await connection.response.create(response={"max_response_output_tokens": 8})
        async for event in connection:
            assert event.type != "error", event
            if event.type == "response.done":
                assert event.response.status in ("completed", "incomplete"), event
                break
    await client.close()


async def test_client_secrets_are_checked_and_open_nothing_else(
    gateway_url: str, api_key: str, redis_server: RedisServer
) -> None:
    key = {"authorization": f"Bearer {api_key}"}
    async with httpx.AsyncClient(base_url=gateway_url, timeout=60) as http:
        minted = await http.post("/v1/realtime/client_secrets", json={}, headers=key)
        assert minted.status_code == 200, minted.text
        secret = minted.json()["value"]
        assert 50 <= minted.json()["expires_at"] - time.time() <= 61  # 60 s unless asked
        # In Redis (any replica accepts it) by its hash only, expiring with it.
        redis = Redis.from_url(redis_server.url)
        slot = "tantra:ek:" + hashlib.sha256(secret.encode()).hexdigest()
        assert 0 < await redis.ttl(slot) <= 60
        assert secret.encode() not in (await redis.get(slot) or b"")
        await redis.aclose()
        as_secret = {"authorization": f"Bearer {secret}"}
        chat = {"model": "x", "messages": [{"role": "user", "content": "hi"}]}
        for refused in (
            await http.post("/v1/chat/completions", json=chat, headers=as_secret),
            await http.get("/v1/models", headers=as_secret),
            await http.post("/v1/realtime/client_secrets", json={}, headers=as_secret),
        ):
            assert refused.status_code == 401, refused.text
            assert refused.json()["error"]["code"] == "invalid_api_key"
        unknown = await http.post(
            "/v1/realtime/calls",
            content="v=0\r\n",
            headers={"authorization": "Bearer ek_unknown", "content-type": "application/sdp"},
        )
        assert unknown.status_code == 401 and "expired" in unknown.json()["error"]["message"]
        assert (await http.post("/v1/realtime/client_secrets", json={})).status_code == 401
        for body, param in (
            ({"expires_after": {"anchor": "created_at", "seconds": 5}}, "expires_after.seconds"),
            ({"expires_after": {"anchor": "created_at", "seconds": 7201}}, "expires_after.seconds"),
            ({"expires_after": {"anchor": "now", "seconds": 60}}, "expires_after.anchor"),
            ({"session": "realtime"}, "session"),
            (
                {"session": {"type": "realtime", "max_output_tokens": "lots"}},
                "session.max_response_output_tokens",
            ),
        ):
            bad = await http.post("/v1/realtime/client_secrets", json=body, headers=key)
            assert bad.status_code == 400, bad.text
            assert bad.json()["error"]["param"] == param, bad.text
        junk = await http.post("/v1/realtime/sessions", content=b"{", headers=key)
        assert junk.status_code == 400 and junk.json()["error"]["type"] == "invalid_request_error"
        missing = await http.post("/v1/realtime/sessions", json={"model": "no-such-model"}, headers=key)
        assert missing.status_code == 404, missing.text
