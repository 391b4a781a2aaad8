"""Transcription sessions, G.711 and the idle timeout of /v1/realtime, against a scripted
loopback (no engine; the real ones are in test_realtime_tools.py)."""

from __future__ import annotations

import audioop
import base64

import numpy as np
import pytest

from gateway.realtime import g711
from tests.gateway.realtime.fake_loopback import Client

SECOND = 48_000  # pcm16 bytes of one second at 24 kHz


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize(
    ("kind", "encode", "decode"),
    [("g711_ulaw", audioop.lin2ulaw, audioop.ulaw2lin), ("g711_alaw", audioop.lin2alaw, audioop.alaw2lin)],
)
def test_the_tables_match_the_itu_reference_as_audioop_has_it(
    kind: str, encode: object, decode: object
) -> None:
    every = np.arange(-32768, 32768, dtype="<i2").tobytes()
    assert g711.encode(every, kind) == encode(every, 2)  # type: ignore[operator]
    codes = bytes(range(256))
    assert g711.decode(codes, kind) == decode(codes, 2)  # type: ignore[operator]


def test_g711_resamples_in_time() -> None:
    """A second at 8 kHz in is a second at 24 kHz inside, and back (chunked, as streamed)."""
    tone = (np.sin(2 * np.pi * 440 * np.arange(24_000) / 24_000) * 8000).astype("<i2").tobytes()
    encoder, decoder = g711.Encoder("g711_ulaw"), g711.Decoder("g711_ulaw")
    out = b"".join(encoder(tone[i : i + 4800]) for i in range(0, len(tone), 4800))
    assert abs(len(out) - 8000) < 200  # one byte a sample; libsoxr's filter holds some 20 ms back
    out += encoder.flush()  # until the response's audio ends
    assert abs(len(out) - 8000) < 2
    back = np.frombuffer(b"".join(decoder(out[i : i + 800]) for i in range(0, len(out), 800)), "<i2")
    assert abs(len(back) - 24_000) < 400
    original = np.frombuffer(tone, "<i2")[: len(back)].astype(float)
    # The same tone: its level within 1 dB after companding and two resamplings.
    level = 20 * np.log10(np.sqrt(np.mean(back[1000:].astype(float) ** 2)) / np.sqrt(np.mean(original**2)))
    assert abs(level) < 1.0


async def test_beta_transcription_session_transcribes_and_answers_nothing() -> None:
    client = Client()
    updated = await client.send(
        {
            "type": "transcription_session.update",
            "session": {"input_audio_transcription": {"model": "whisper-1"}, "turn_detection": None},
        }
    )
    assert updated["type"] == "transcription_session.updated", updated
    assert updated["session"]["object"] == "realtime.transcription_session"
    assert updated["session"]["turn_detection"] is None
    await client.send(
        {"type": "input_audio_buffer.append", "audio": base64.b64encode(bytes(SECOND)).decode()}
    )
    await client.send({"type": "input_audio_buffer.commit"})
    completed = await client.until("conversation.item.input_audio_transcription.completed")
    (delta,) = client.of("conversation.item.input_audio_transcription.delta")
    assert delta["delta"] == completed["transcript"] == "hello there"
    assert delta["item_id"] == completed["item_id"]
    error = await client.send({"type": "response.create"})
    assert error["type"] == "error" and "transcription session" in error["error"]["message"]
    assert client.loopback.bodies == []  # no chat completion was asked for


async def test_ga_transcription_session_shape() -> None:
    client = Client()
    updated = await client.send(
        {
            "type": "session.update",
            "session": {
                "type": "transcription",
                "audio": {
                    "input": {"format": {"type": "audio/pcmu"}, "transcription": {"model": "whisper-1"}}
                },
            },
        }
    )
    assert updated["type"] == "session.updated", updated
    session = updated["session"]
    assert session["type"] == "transcription" and session["object"] == "realtime.transcription_session"
    assert session["audio"]["input"]["format"] == {"type": "audio/pcmu"}
    assert session["audio"]["input"]["transcription"] == {"model": "whisper-1"}
    assert session["audio"]["input"]["turn_detection"]["type"] == "server_vad"


async def test_ga_audio_formats_round_trip_through_the_session_shape() -> None:
    client = Client()
    updated = await client.send(
        {
            "type": "session.update",
            "session": {
                "type": "realtime",
                "audio": {
                    "input": {"format": {"type": "audio/pcma"}},
                    "output": {"format": {"type": "audio/pcmu"}},
                },
            },
        }
    )
    assert updated["session"]["audio"]["input"]["format"] == {"type": "audio/pcma"}
    assert updated["session"]["audio"]["output"]["format"] == {"type": "audio/pcmu"}
    error = await client.send(
        {
            "type": "session.update",
            "session": {"type": "realtime", "audio": {"input": {"format": {"type": "audio/x"}}}},
        }
    )
    assert error["type"] == "error" and error["error"]["param"] == "session.input_audio_format", error


async def test_server_vad_is_the_default_and_the_idle_timeout_commits_silence() -> None:
    client = Client()
    assert client.events == []
    await client.session.start()
    assert client.events[0]["session"]["turn_detection"]["type"] == "server_vad"
    await client.send(
        {
            "type": "session.update",
            "session": {
                "type": "realtime",
                "output_modalities": ["text"],
                "audio": {"input": {"turn_detection": {"type": "server_vad", "idle_timeout_ms": 5000}}},
            },
        }
    )
    client.loopback.transcript = ""
    silence = base64.b64encode(bytes(SECOND)).decode()
    for _ in range(4):
        await client.send({"type": "input_audio_buffer.append", "audio": silence})
    assert not client.of("input_audio_buffer.timeout_triggered")
    for _ in range(2):
        await client.send({"type": "input_audio_buffer.append", "audio": silence})
    (fired,) = client.of("input_audio_buffer.timeout_triggered")
    assert fired["audio_start_ms"] == 0 and fired["audio_end_ms"] == 5000
    committed = await client.until("input_audio_buffer.committed")
    assert committed["item_id"] == fired["item_id"]
    await client.until("response.done")  # asked for, as OpenAI's (the silence had no words)
    error = await client.send(
        {
            "type": "session.update",
            "session": {"turn_detection": {"type": "server_vad", "idle_timeout_ms": 10}},
        }
    )
    assert error["error"]["param"] == "session.turn_detection.idle_timeout_ms", error
