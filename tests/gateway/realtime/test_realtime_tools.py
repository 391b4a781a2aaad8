"""Function calling, out-of-band responses, transcription sessions and G.711 audio over
/v1/realtime, with OpenAI's SDK (beta and GA realtime clients) and `websockets` against the real
gateway and engine (the session fixtures; the engine parses tool calls, `--tool-call-parser
hermes`). The model's weights are random, so its call is forced with `tool_choice` naming the
function, which vLLM serves through structured outputs: the arguments follow the schema."""

from __future__ import annotations

import audioop
import base64
import json
from typing import Any

import av
import numpy as np
import openai
import pytest

from tests.audio_samples import needs_espeak, spoken_sentence
from tests.gateway.realtime.test_realtime import connect, pcm16_24k

pytestmark = pytest.mark.engine

WEATHER: dict[str, Any] = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    # One allowed value keeps the random-weight model's forced arguments short.
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string", "enum": ["Paris"]}},
        "required": ["city"],
        "additionalProperties": False,
    },
}
ARGUMENTS = '{"city":"Paris"}'


def follows_the_schema(arguments: str, status: str) -> bool:
    """The forced call's arguments, whitespace aside, are the one value the schema allows, or its
    beginning when the token cap cut them short (xgrammar lets a random-weight model write any
    amount of whitespace between JSON tokens)."""
    compact = "".join(arguments.split())
    return compact == ARGUMENTS if status == "completed" else ARGUMENTS.startswith(compact)


USER = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Weather in Paris?"}]}


def sdk(gateway_url: str, api_key: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=gateway_url + "/v1",
        websocket_base_url=gateway_url.replace("http://", "ws://") + "/v1",
        api_key=api_key,
        max_retries=0,
    )


async def until_done(connection: Any, seen: list[Any]) -> Any:
    async for event in connection:
        seen.append(event)
        assert event.type != "error", event
        if event.type == "response.done":
            return event
    raise AssertionError("the connection closed before response.done")


async def test_beta_sdk_runs_a_tool_calling_conversation(gateway_url: str, model: str, api_key: str) -> None:
    client = sdk(gateway_url, api_key)
    async with client.beta.realtime.connect(model=model) as connection:
        await connection.session.update(
            session={"modalities": ["text"], "tools": [WEATHER], "tool_choice": "get_weather"}  # type: ignore[list-item]
        )
        await connection.conversation.item.create(item=USER)  # type: ignore[arg-type]
        await connection.response.create(response={"max_response_output_tokens": 64})
        seen: list[Any] = []
        done = await until_done(connection, seen)
        assert done.response.status in ("completed", "incomplete"), done
        (call,) = done.response.output
        assert call.type == "function_call" and call.name == "get_weather" and call.call_id
        assert follows_the_schema(call.arguments, done.response.status), call.arguments
        if done.response.status == "completed":
            assert json.loads(call.arguments) == {"city": "Paris"}
        deltas = [e.delta for e in seen if e.type == "response.function_call_arguments.delta"]
        assert "".join(deltas) == call.arguments
        (arguments,) = [e for e in seen if e.type == "response.function_call_arguments.done"]
        assert arguments.arguments == call.arguments and arguments.call_id == call.call_id
        assert any(e.type == "rate_limits.updated" for e in seen)
        first_input = done.response.usage.input_tokens
        # The function's output goes back; the next response (tools allowed, not forced) reads it.
        await connection.conversation.item.create(
            item={"type": "function_call_output", "call_id": call.call_id, "output": '{"temp_c": 21}'}
        )
        await connection.response.create(response={"tool_choice": "auto", "max_response_output_tokens": 8})
        answered = await until_done(connection, seen)
        assert answered.response.status in ("completed", "incomplete"), answered
        assert answered.response.output and answered.response.output[0].type == "message"
        # The call and its output joined the prompt (the template writes the arguments compactly).
        assert answered.response.usage.input_tokens > first_input + 10
    await client.close()


async def test_ga_sdk_tool_call_and_an_out_of_band_response(
    gateway_url: str, model: str, api_key: str
) -> None:
    client = sdk(gateway_url, api_key)
    async with client.realtime.connect(model=model) as connection:
        await connection.session.update(
            session={
                "type": "realtime",
                "output_modalities": ["text"],
                "tools": [WEATHER],  # type: ignore[list-item]
                "tool_choice": {"type": "function", "name": "get_weather"},
            }
        )
        await connection.conversation.item.create(item=USER)  # type: ignore[arg-type]
        await connection.response.create(response={"max_output_tokens": 64})
        seen: list[Any] = []
        done = await until_done(connection, seen)
        (call,) = done.response.output
        assert call.type == "function_call" and follows_the_schema(call.arguments, done.response.status)
        kinds = [e.type for e in seen]
        assert "conversation.item.added" in kinds and "conversation.item.done" in kinds
        assert "conversation.item.created" not in kinds
        session = next(e for e in seen if e.type == "session.updated").session
        assert session.tool_choice.name == "get_weather"
        await connection.conversation.item.create(
            item={"type": "function_call_output", "call_id": call.call_id or "", "output": "21 C"}
        )
        # Out of band: its own input and metadata; nothing joins the conversation.
        added_before = kinds.count("conversation.item.added")
        seen.clear()
        out_of_band: Any = {
            "conversation": "none",
            "metadata": {"purpose": "classify"},
            "input": [USER],
            "tool_choice": "none",
            "max_output_tokens": 4,
        }
        await connection.response.create(response=out_of_band)
        side = await until_done(connection, seen)
        assert side.response.metadata == {"purpose": "classify"} and side.response.conversation_id is None
        assert side.response.status in ("completed", "incomplete")
        assert [e.type for e in seen].count("conversation.item.added") == 1  # the function output's only
        assert added_before >= 2
    await client.close()


@needs_espeak
async def test_a_transcription_session_transcribes_and_answers_nothing(
    gateway_url: str, model: str, api_key: str
) -> None:
    """GA's `session.type: "transcription"` through the SDK, then beta's event on a socket."""
    pcm = pcm16_24k(spoken_sentence("Hello there."))
    client = sdk(gateway_url, api_key)
    async with client.realtime.connect(model=model) as connection:
        await connection.session.update(
            session={
                "type": "transcription",
                "audio": {"input": {"transcription": {"model": "whisper-1"}, "turn_detection": None}},
            }
        )
        await connection.input_audio_buffer.append(audio=base64.b64encode(pcm).decode())
        await connection.input_audio_buffer.commit()
        kinds, delta, completed = [], "", None
        async for event in connection:
            kinds.append(event.type)
            assert event.type != "error", event
            if event.type == "session.updated":
                assert event.session.type == "transcription"
            elif event.type == "conversation.item.input_audio_transcription.delta":
                delta += event.delta or ""
            elif event.type == "conversation.item.input_audio_transcription.completed":
                completed = event
                break
        assert completed is not None and completed.transcript == delta
        await connection.response.create()
        refused = await connection.recv()
        assert refused.type == "error"
    await client.close()
    async for session in connect(gateway_url, model, api_key):
        await session.send(
            {
                "type": "transcription_session.update",
                "session": {"input_audio_transcription": {"model": "whisper-1"}},
            }
        )
        updated = await session.until("transcription_session.updated")
        assert updated["session"]["object"] == "realtime.transcription_session"
        assert updated["session"]["turn_detection"]["type"] == "server_vad"  # OpenAI's default


def g711_8k(pcm24k: bytes, kind: str) -> bytes:
    """pcm16 at 24 kHz as G.711 at 8 kHz, by PyAV and the stdlib's audioop (not the gateway's code)."""
    resampler = av.AudioResampler(format="s16", layout="mono", rate=8000)
    frame = av.AudioFrame.from_ndarray(
        np.frombuffer(pcm24k, "<i2").reshape(1, -1), format="s16", layout="mono"
    )
    frame.sample_rate = 24_000
    pcm8k = b"".join(out.to_ndarray().tobytes() for f in (frame, None) for out in resampler.resample(f))
    return audioop.lin2ulaw(pcm8k, 2) if kind == "g711_ulaw" else audioop.lin2alaw(pcm8k, 2)


@needs_espeak
async def test_g711_in_and_out(gateway_url: str, model: str, api_key: str) -> None:
    """mu-law in: server VAD finds the speech where it is (so the decoding and 8 to 24 kHz
    resampling keep time); a-law out: the spoken answer decodes to audible 8 kHz speech."""
    speech = pcm16_24k(spoken_sentence())
    audio = g711_8k(bytes(24_000) + speech + bytes(48_000), "g711_ulaw")  # 0.5 s, speech, 1 s
    async for session in connect(gateway_url, model, api_key):
        await session.send(
            {
                "type": "session.update",
                "session": {
                    "modalities": ["text", "audio"],
                    "input_audio_format": "g711_ulaw",
                    "output_audio_format": "g711_alaw",
                    "turn_detection": {"type": "server_vad", "create_response": False},
                },
            }
        )
        updated = await session.until("session.updated")
        assert updated["session"]["input_audio_format"] == "g711_ulaw"
        for start in range(0, len(audio), 1600):  # 200 ms a chunk, one byte a sample
            await session.send(
                {
                    "type": "input_audio_buffer.append",
                    "audio": base64.b64encode(audio[start : start + 1600]).decode(),
                }
            )
        started = await session.until("input_audio_buffer.speech_started")
        stopped = await session.until("input_audio_buffer.speech_stopped")
        speech_ms = len(speech) * 1000 // 48_000
        assert 300 <= started["audio_start_ms"] <= 1000, started
        assert abs((stopped["audio_end_ms"] - started["audio_start_ms"]) - speech_ms) <= 400, (
            started,
            stopped,
        )
    # A second session speaks a-law (the first one's turn is still being transcribed: its
    # closing stops that, and this test needs no transcript).
    async for session in connect(gateway_url, model, api_key):
        await session.send(
            {
                "type": "session.update",
                "session": {"modalities": ["text", "audio"], "output_audio_format": "g711_alaw"},
            }
        )
        await session.until("session.updated")
        await session.send(
            {
                "type": "conversation.item.create",
                "item": {
                    "type": "message",
                    "role": "assistant",
                    "content": [{"type": "text", "text": "Hello."}],
                },
            }
        )
        await session.send({"type": "response.create", "response": {"max_output_tokens": 24}})
        done = await session.until("response.done", errors_expected=True)
        assert done["response"]["output_audio_format"] == "g711_alaw"
        transcript = "".join(e["delta"] for e in session.of("response.audio_transcript.delta"))
        alaw = b"".join(base64.b64decode(e["delta"]) for e in session.of("response.audio.delta"))
        if any(ch.isalnum() for ch in transcript):  # random weights: usually speakable noise
            pcm8k = np.frombuffer(audioop.alaw2lin(alaw, 2), "<i2")
            assert len(pcm8k) / 8000 > 0.2, transcript
            assert np.sqrt(np.mean(pcm8k.astype(float) ** 2)) > 100  # speech, not silence
