"""WebSocket /v1/realtime with the `websockets` library against the real gateway and engine."""

from __future__ import annotations

import asyncio
import base64
import io
import json
from collections.abc import AsyncIterator
from typing import Any

import av
import httpx
import openai
import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from tests.audio_samples import needs_espeak, spoken_sentence
from tests.gateway.helpers import AdminClient
from tests.gateway.http.test_disconnect import LONG, engine_metric, wait_until_idle

pytestmark = pytest.mark.engine

TIMEOUT = 120.0


def ws_url(gateway_url: str, model: str) -> str:
    return gateway_url.replace("http://", "ws://") + f"/v1/realtime?model={model}"


class Session:
    """A realtime client: send events, read server events until one of a type arrives."""

    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection
        self.seen: list[dict[str, Any]] = []

    async def send(self, event: dict[str, Any]) -> None:
        await self.connection.send(json.dumps(event))

    async def next(self) -> dict[str, Any]:
        event = json.loads(await asyncio.wait_for(self.connection.recv(), TIMEOUT))
        self.seen.append(event)
        return dict(event)

    async def until(self, kind: str, *, errors_expected: bool = False) -> dict[str, Any]:
        while (event := await self.next())["type"] != kind:
            assert event["type"] != "error" or errors_expected, event
        return event

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [event for event in self.seen if event["type"] == kind]


async def connect(gateway_url: str, model: str, key: str, **kwargs: Any) -> AsyncIterator[Session]:
    async with websockets.connect(
        ws_url(gateway_url, model), additional_headers={"authorization": f"Bearer {key}"}, **kwargs
    ) as connection:
        session = Session(connection)
        created = await session.next()
        assert created["type"] == "session.created", created
        yield session


@pytest.fixture
async def session(gateway_url: str, model: str, api_key: str) -> AsyncIterator[Session]:
    async for opened in connect(gateway_url, model, api_key):
        await opened.send({"type": "session.update", "session": {"modalities": ["text"]}})
        await opened.until("session.updated")
        yield opened


async def say(session: Session, text: str) -> None:
    await session.send(
        {
            "type": "conversation.item.create",
            "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]},
        }
    )
    created = await session.until("conversation.item.created")
    assert created["item"]["content"][0]["text"] == text


async def test_text_in_streams_text_deltas_out(session: Session) -> None:
    await say(session, "Say something.")
    await session.send({"type": "response.create", "response": {"max_output_tokens": 24}})
    created = await session.until("response.created")
    done = await session.until("response.done")
    response = done["response"]
    assert response["id"] == created["response"]["id"]
    assert response["status"] in ("completed", "incomplete")
    deltas = session.of("response.text.delta")
    assert len(deltas) > 1, "the text did not stream token by token"
    text = "".join(event["delta"] for event in deltas)
    assert session.of("response.text.done")[0]["text"] == text
    assert response["output"][0]["content"] == [{"type": "text", "text": text}]
    assert response["usage"]["output_tokens"] == 24 or response["status"] == "completed"
    assert response["usage"]["input_tokens"] > 0
    order = [event["type"] for event in session.seen]
    assert order.index("response.output_item.added") < order.index("response.text.delta")
    assert order.index("response.text.done") < order.index("response.done")
    # The answer joins the conversation: the next response sees it.
    await say(session, "And again.")
    await session.send({"type": "response.create", "response": {"max_output_tokens": 4}})
    assert (await session.until("response.done"))["response"]["status"] in ("completed", "incomplete")


async def test_cancel_stops_generation_and_the_engine_request(
    session: Session, gateway_url: str, auth: dict[str, str], engine_url: str, model: str
) -> None:
    wait_until_idle(engine_url)
    # A second request with many choices keeps the engine's steps slow, so that the realtime
    # answer cannot be generated in full before the cancel arrives (the tiny core is very fast).
    async with httpx.AsyncClient(base_url=gateway_url, headers=auth, timeout=120) as client:
        load = asyncio.create_task(
            client.post(
                "/v1/chat/completions",
                json={"model": model, "messages": [{"role": "user", "content": "Go on."}], **LONG},
            )
        )
        try:
            generated_before = engine_metric(engine_url, "vllm:generation_tokens_total")
            await say(session, "Talk for a long time.")
            await session.send({"type": "response.create", "response": {"max_output_tokens": 1800}})
            await session.until("response.text.delta")
            await session.send({"type": "response.cancel"})
            done = await session.until("response.done")
            assert done["response"]["status"] == "cancelled"
            assert done["response"]["status_details"]["reason"] == "client_cancelled"
            # A cancelled response has nothing running any more: cancelling again is an error.
            await session.send({"type": "response.cancel", "event_id": "again"})
            error = await session.until("error")
            assert error["error"]["code"] == "response_cancel_not_active"
            assert error["error"]["event_id"] == "again"
        finally:
            load.cancel()
    wait_until_idle(engine_url, timeout=30)
    generated = engine_metric(engine_url, "vllm:generation_tokens_total") - generated_before
    assert generated < LONG["max_tokens"] * LONG["n"] + 1800, "an engine request ran to its end for nobody"


async def test_one_response_at_a_time_and_bad_events_get_errors(session: Session) -> None:
    await session.send({"type": "no.such.event", "event_id": "e1"})
    error = (await session.until("error"))["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == "type" and error["event_id"] == "e1"
    await session.send({"type": "session.update", "session": {"temperature": 7}})
    error = (await session.until("error"))["error"]
    assert error["param"] == "session.temperature", error
    await session.connection.send("{not json")
    assert (await session.until("error"))["error"]["code"] == "invalid_json"
    await session.send({"type": "input_audio_buffer.commit"})
    assert (await session.until("error"))["error"]["code"] == "input_audio_buffer_commit_empty"
    await session.send({"type": "input_audio_buffer.append", "audio": "@@@"})
    assert (await session.until("error"))["error"]["param"] == "audio"
    await session.send({"type": "response.create"})
    assert (await session.until("error"))["error"]["code"] == "conversation_empty"
    await say(session, "Hello.")
    await session.send({"type": "response.create", "response": {"max_output_tokens": 200}})
    await session.send({"type": "response.create", "event_id": "second"})
    error = (await session.until("error"))["error"]
    assert error["code"] == "conversation_already_has_active_response" and error["event_id"] == "second"
    await session.until("response.done", errors_expected=True)


async def test_engine_errors_become_error_events(session: Session) -> None:
    await say(session, "word " * 3000)  # longer than the tiny engine's context
    await session.send({"type": "response.create"})
    error = (await session.until("error"))["error"]
    assert error["type"] == "invalid_request_error", error
    done = await session.until("response.done", errors_expected=True)
    assert done["response"]["status"] == "failed"


async def test_unauthenticated_and_unknown_model_are_refused(
    gateway_url: str, model: str, api_key: str
) -> None:
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with websockets.connect(ws_url(gateway_url, model)):
            pass
    assert refused.value.response.status_code == 401
    assert json.loads(refused.value.response.body)["error"]["code"] == "invalid_api_key"
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with websockets.connect(
            ws_url(gateway_url, "no-such-model"), additional_headers={"authorization": f"Bearer {api_key}"}
        ):
            pass
    assert refused.value.response.status_code == 404


async def test_browser_subprotocol_key_and_model_permissions(
    gateway_url: str, model: str, admin: AdminClient
) -> None:
    tenant = admin.tenant("realtime-browser")
    allowed, _ = admin.key(tenant["id"], "browser")
    protocols = ["realtime", f"openai-insecure-api-key.{allowed}"]
    async with websockets.connect(ws_url(gateway_url, model), subprotocols=protocols) as connection:  # type: ignore[arg-type]
        assert connection.subprotocol == "realtime"
        assert json.loads(await connection.recv())["type"] == "session.created"
    narrow, _ = admin.key(tenant["id"], "narrow", allowed_models=["some-other-model"])
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with websockets.connect(
            ws_url(gateway_url, model), additional_headers={"authorization": f"Bearer {narrow}"}
        ):
            pass
    assert refused.value.response.status_code == 404  # as for a model that does not exist


async def test_rate_limits_apply_to_each_response(gateway_url: str, model: str, admin: AdminClient) -> None:
    tenant = admin.tenant("realtime-limited")
    key, _ = admin.key(tenant["id"], "one-a-minute", rpm=1)
    async for session in connect(gateway_url, model, key):
        await session.send({"type": "session.update", "session": {"modalities": ["text"]}})
        await say(session, "Hi.")
        for _ in range(2):
            await session.send({"type": "response.create", "response": {"max_output_tokens": 2}})
            done = await session.until("response.done", errors_expected=True)
        assert done["response"]["status"] == "failed"
        errors = session.of("error")
        assert errors and errors[-1]["error"]["code"] == "rate_limit_exceeded", errors


@needs_espeak
async def test_audio_out_is_spoken_sentence_by_sentence(gateway_url: str, model: str, api_key: str) -> None:
    """The answer's text is spoken by /v1/audio/speech (eSpeak NG) as its sentences complete."""
    async for session in connect(gateway_url, model, api_key):
        await session.send(
            {"type": "session.update", "session": {"modalities": ["text", "audio"], "voice": "nova"}}
        )
        await session.until("session.updated")
        await say(session, "Say something.")
        await session.send({"type": "response.create", "response": {"max_output_tokens": 48}})
        done = await session.until("response.done")
        assert done["response"]["status"] in ("completed", "incomplete"), done
        transcript = "".join(event["delta"] for event in session.of("response.audio_transcript.delta"))
        pcm = b"".join(base64.b64decode(event["delta"]) for event in session.of("response.audio.delta"))
        if any(ch.isalnum() for ch in transcript):  # random weights: the words are noise, usually speakable
            assert len(pcm) / 2 / 24_000 > 0.2, transcript
            assert len(pcm) % 2 == 0
            # The user heard half of it: the conversation keeps only the words of that half.
            item_id = done["response"]["output"][0]["id"]
            half_ms = len(pcm) // 96
            await session.send(
                {
                    "type": "conversation.item.truncate",
                    "item_id": item_id,
                    "content_index": 0,
                    "audio_end_ms": half_ms,
                }
            )
            assert (await session.until("conversation.item.truncated"))["audio_end_ms"] == half_ms
            await session.send({"type": "conversation.item.retrieve", "item_id": item_id})
            heard = (await session.until("conversation.item.retrieved"))["item"]["content"][0]["transcript"]
            assert len(heard) < len(transcript.strip())
        assert not session.of("error")


def pcm16_24k(wav: bytes) -> bytes:
    """A WAV file as the Realtime API's input audio: 16-bit little-endian mono at 24 kHz."""
    resampler = av.AudioResampler(format="s16", layout="mono", rate=24_000)
    out = bytearray()
    with av.open(io.BytesIO(wav), mode="r") as source:
        for frame in [*source.decode(audio=0), None]:
            for converted in resampler.resample(frame):
                out += converted.to_ndarray().tobytes()
    return bytes(out)


@needs_espeak
async def test_audio_in_is_transcribed_and_answered(gateway_url: str, model: str, api_key: str) -> None:
    """Spoken audio appended in chunks and committed becomes a user item with its transcript
    (by /v1/audio/transcriptions, whisper.cpp), which the response then answers."""
    pcm = pcm16_24k(spoken_sentence())
    async for session in connect(gateway_url, model, api_key):
        # Server VAD is on by default (as OpenAI's): off, the client commits itself.
        await session.send(
            {"type": "session.update", "session": {"modalities": ["text"], "turn_detection": None}}
        )
        await session.until("session.updated")
        for start in range(0, len(pcm), 9600):  # 200 ms per event, as a microphone would send
            chunk = pcm[start : start + 9600]
            await session.send(
                {"type": "input_audio_buffer.append", "audio": base64.b64encode(chunk).decode()}
            )
        await session.send({"type": "input_audio_buffer.commit"})
        committed = await session.until("input_audio_buffer.committed")
        created = await session.until("conversation.item.created")
        assert created["item"]["id"] == committed["item_id"]
        assert created["item"]["content"] == [{"type": "input_audio", "transcript": None}]
        # Asked for at once: the response waits for the transcript it answers.
        await session.send({"type": "response.create", "response": {"max_output_tokens": 8}})
        transcribed = await session.until("conversation.item.input_audio_transcription.completed")
        assert transcribed["item_id"] == committed["item_id"] and isinstance(transcribed["transcript"], str)
        done = await session.until("response.done")
        # Random weights: the transcript may be empty, and then there is nothing to answer.
        if transcribed["transcript"].strip():
            assert done["response"]["status"] in ("completed", "incomplete"), done
            assert done["response"]["usage"]["input_tokens"] > 0
        else:
            assert done["response"]["status"] == "failed"
            assert session.of("error")[-1]["error"]["code"] == "conversation_empty"
        # The buffer was emptied by the commit.
        await session.send({"type": "input_audio_buffer.commit"})
        assert (await session.until("error"))["error"]["code"] == "input_audio_buffer_commit_empty"


@needs_espeak
async def test_server_vad_commits_each_turn_and_answers_it(
    gateway_url: str, model: str, api_key: str
) -> None:
    """With `turn_detection: server_vad` the client only streams its microphone: the server finds
    where the speech starts and stops, commits that turn, transcribes it and answers it."""
    speech = pcm16_24k(spoken_sentence())
    audio = bytes(24_000) + speech + bytes(48_000)  # 0.5 s of silence, the sentence, 1 s of silence
    async for session in connect(gateway_url, model, api_key):
        vad = {"type": "server_vad", "silence_duration_ms": 700}
        await session.send(
            {"type": "session.update", "session": {"modalities": ["text"], "turn_detection": vad}}
        )
        updated = await session.until("session.updated")
        assert updated["session"]["turn_detection"]["silence_duration_ms"] == 700
        for start in range(0, len(audio), 9600):
            chunk = audio[start : start + 9600]
            await session.send(
                {"type": "input_audio_buffer.append", "audio": base64.b64encode(chunk).decode()}
            )
        started = await session.until("input_audio_buffer.speech_started")
        assert 300 <= started["audio_start_ms"] <= 1000, started
        stopped = await session.until("input_audio_buffer.speech_stopped")
        speech_ms = len(speech) * 1000 // 48_000
        assert stopped["audio_end_ms"] - started["audio_start_ms"] <= speech_ms + 100, (started, stopped)
        committed = await session.until("input_audio_buffer.committed")
        assert started["item_id"] == stopped["item_id"] == committed["item_id"]
        transcribed = await session.until("conversation.item.input_audio_transcription.completed")
        assert transcribed["item_id"] == committed["item_id"]
        # No response.create was sent: the turn's end asked for the answer.
        done = await session.until("response.done")
        assert done["response"]["status"] in ("completed", "incomplete", "failed"), done
        assert len(session.of("input_audio_buffer.speech_started")) == 1


@needs_espeak
async def test_speech_interrupts_the_response_being_given(gateway_url: str, model: str, api_key: str) -> None:
    """Barge-in: the user starts talking while the answer streams, and the answer stops there.

    Random weights can end an answer (end of sequence) before the speech is heard: that round
    tests nothing, so its turn is closed and the answer asked for again."""
    speech = pcm16_24k(spoken_sentence())
    silence = base64.b64encode(bytes(48_000)).decode()  # 1 s: ends the turn
    async for session in connect(gateway_url, model, api_key):
        vad = {"type": "server_vad", "create_response": False}
        await session.send(
            {"type": "session.update", "session": {"modalities": ["text"], "turn_detection": vad}}
        )
        await session.until("session.updated")
        await say(session, "Tell me a long story.")
        asked = 0
        for _ in range(5):
            asked += 1
            await session.send({"type": "response.create", "response": {"max_output_tokens": 1500}})
            await session.until("response.text.delta")
            mark = len(session.seen)
            for start in range(0, len(speech), 9600):
                chunk = speech[start : start + 9600]
                await session.send(
                    {"type": "input_audio_buffer.append", "audio": base64.b64encode(chunk).decode()}
                )
            await session.until("input_audio_buffer.speech_started")
            ended_first = [event for event in session.seen[mark:] if event["type"] == "response.done"]
            if not ended_first:
                done = await session.until("response.done")
                assert done["response"]["status"] == "cancelled", done
                break
            await session.send({"type": "input_audio_buffer.append", "audio": silence})
            await session.until("input_audio_buffer.committed")
        else:
            pytest.fail("every answer ended on its own before the speech began")
        await session.send({"type": "input_audio_buffer.append", "audio": silence})
        await session.until("input_audio_buffer.committed")
        assert len(session.of("response.created")) == asked, "create_response: false asks for no answer"


async def test_the_openai_sdk_realtime_client_talks_to_it(gateway_url: str, model: str, api_key: str) -> None:
    """OpenAI's own SDK (`client.beta.realtime`, its typed events) as the client: text in, text
    streamed out, and a server-VAD session update it sends as OpenAI documents it."""
    # The SDK speaks wss:// unless told the WebSocket base: plain ws:// on this test server.
    client = openai.AsyncOpenAI(
        base_url=gateway_url + "/v1",
        websocket_base_url=gateway_url.replace("http://", "ws://") + "/v1",
        api_key=api_key,
        max_retries=0,
    )
    async with client.beta.realtime.connect(model=model) as connection:
        await connection.session.update(
            session={"modalities": ["text"], "turn_detection": {"type": "server_vad", "threshold": 0.6}}
        )
        await connection.conversation.item.create(
            item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hello!"}]}
        )
        await connection.response.create(response={"max_response_output_tokens": 8})
        kinds, deltas = [], []
        async for event in connection:
            kinds.append(event.type)
            if event.type == "session.updated":
                assert event.session.turn_detection is not None
                assert event.session.turn_detection.threshold == 0.6
            elif event.type == "response.text.delta":
                deltas.append(event.delta)
            elif event.type == "response.done":
                assert event.response.status in ("completed", "incomplete"), event
                assert event.response.usage is not None and event.response.usage.output_tokens
                break
            assert event.type != "error", event
    assert kinds[0] == "session.created" and deltas
    await client.close()


async def test_the_openai_sdk_ga_realtime_client_talks_to_it(
    gateway_url: str, model: str, api_key: str
) -> None:
    """The SDK's GA interface (`client.realtime`): GA session shape in, GA event names out."""
    client = openai.AsyncOpenAI(
        base_url=gateway_url + "/v1",
        websocket_base_url=gateway_url.replace("http://", "ws://") + "/v1",
        api_key=api_key,
        max_retries=0,
    )
    async with client.realtime.connect(model=model) as connection:
        await connection.session.update(
            session={
                "type": "realtime",
                "output_modalities": ["text"],
                "instructions": "Be brief.",
                "audio": {"input": {"turn_detection": {"type": "server_vad", "silence_duration_ms": 600}}},
            }
        )
        await connection.conversation.item.create(
            item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hello!"}]}
        )
        await connection.response.create(response={"output_modalities": ["text"], "max_output_tokens": 8})
        kinds, deltas = [], []
        async for event in connection:
            kinds.append(event.type)
            assert event.type != "error", event
            if event.type == "session.updated":
                assert event.session.type == "realtime"
                assert event.session.output_modalities == ["text"]
                detection = event.session.audio.input.turn_detection  # type: ignore[union-attr]
                assert detection is not None and detection.silence_duration_ms == 600  # type: ignore[union-attr]
            elif event.type == "response.output_text.delta":
                deltas.append(event.delta)
            elif event.type == "response.done":
                assert event.response.status in ("completed", "incomplete"), event
                assert event.response.output_modalities == ["text"]
                assert event.response.output, event
                item = event.response.output[0]
                assert item.type == "message", item
                assert item.content and item.content[0].type == "output_text"
                break
    assert deltas and "response.text.delta" not in kinds and "response.output_text.done" in kinds
    await client.close()
