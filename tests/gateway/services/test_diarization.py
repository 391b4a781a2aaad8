"""Speaker diarization end to end: `response_format: diarized_json` through the real `openai` SDK, a
real gateway, whisper.cpp on the random tiny model and Resemblyzer's trained voice encoder.

Two eSpeak NG voices (a male and a female variant of `en-us`) take turns in a conversation; what
each said and when is known exactly, so the diarization error rate is measured, not eyeballed.
The text is the random Whisper's noise: only the speakers and times are checked."""

from __future__ import annotations

import base64
import io
import itertools
import wave
from collections.abc import Callable, Iterator, Sequence

import httpx
import numpy as np
import openai
import pytest

from adapters.stt import diarization_installed
from gateway import Settings, create_app
from tests.audio_samples import espeak_wav, needs_espeak
from tests.servers import ThreadedServer

pytestmark = [
    needs_espeak,
    pytest.mark.skipif(not diarization_installed(), reason="the `diarization` extra is not installed"),
]

VOICES = ("en-us", "en-us+f3")
LINES = (
    "Good morning, I would like to book a table for two people tonight.",
    "Certainly, at what time would you like to come in this evening?",
    "Around eight would be perfect. Could we sit near the window?",
    "Of course, I have reserved the window table for you at eight.",
)
RATE = 22_050  # eSpeak NG's
PAUSE_S = 0.6

Turn = tuple[float, float, int]  # start, end, voice
# The random Whisper's text is noise: a temperature above 0 decodes it once, without whisper's
# fallback retries (half the time), and a language skips its detection.
WHISPER: dict[str, object] = {"language": "en", "temperature": 0.5}


def _speech(text: str, voice: str) -> np.ndarray:
    """eSpeak NG's samples of `text`, its leading and trailing silence cut (the truth is exact)."""
    with wave.open(io.BytesIO(espeak_wav(text, voice=voice))) as reader:
        samples = np.frombuffer(reader.readframes(reader.getnframes()), dtype="<i2")
    loud = np.flatnonzero(np.abs(samples) > 0.02 * np.abs(samples).max())
    return samples[loud[0] : loud[-1] + 1]


def _wav(samples: np.ndarray) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(RATE)
        writer.writeframes(samples.astype("<i2").tobytes())
    return out.getvalue()


def _data_url(samples: np.ndarray) -> str:
    return "data:audio/wav;base64," + base64.b64encode(_wav(samples)).decode()


@pytest.fixture(scope="module")
def conversation() -> tuple[bytes, list[Turn]]:
    """The two voices in turns with pauses between, as a WAV, and who spoke when."""
    pieces: list[np.ndarray] = []
    turns: list[Turn] = []
    position = 0
    pause = np.zeros(int(PAUSE_S * RATE), np.int16)
    for number, line in enumerate(LINES):
        speech = _speech(line, VOICES[number % 2])
        turns.append((position / RATE, (position + len(speech)) / RATE, number % 2))
        pieces += [speech, pause]
        position += len(speech) + len(pause)
    return _wav(np.concatenate(pieces)), turns


@pytest.fixture(scope="module")
def references() -> tuple[str, str]:
    """A clip of each voice saying something not in the conversation (2-10 s, as OpenAI asks)."""
    text = "This is a recording of my voice, for you to know me by when I speak later."
    return _data_url(_speech(text, VOICES[0])), _data_url(_speech(text, VOICES[1]))


@pytest.fixture(scope="module")
def diarizing_gateway(gateway_settings: Callable[..., Settings]) -> Iterator[str]:
    """A gateway with auth off: transcription needs no engine."""
    with ThreadedServer(create_app(gateway_settings(auth_enabled=False))) as server:
        yield server.url


@pytest.fixture(scope="module")
def client(diarizing_gateway: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=diarizing_gateway + "/v1", api_key="unused", max_retries=0, timeout=600
    ) as sdk:
        yield sdk


def diarization_error_rate(
    truth: Sequence[Turn], segments: Sequence[object], names: dict[str, int] | None
) -> float:
    """(missed speech + false alarm + speaker confusion) / speech, on a 10 ms grid, no collar. The
    speakers are mapped onto the voices in the way that errs least, unless `names` fixes it."""
    end = max(max(t[1] for t in truth), max(s.end for s in segments)) + 1  # type: ignore[attr-defined]
    grid = np.arange(0, end, 0.01) + 0.005
    reference = np.full(len(grid), -1)
    for start, stop, voice in truth:
        reference[(grid >= start) & (grid < stop)] = voice
    labels = sorted({s.speaker for s in segments})  # type: ignore[attr-defined]
    hypothesis = np.full(len(grid), -1)
    for segment in segments:
        hypothesis[(grid >= segment.start) & (grid < segment.end)] = labels.index(segment.speaker)  # type: ignore[attr-defined]
    speech = int((reference >= 0).sum())
    missed = int(((reference >= 0) & (hypothesis < 0)).sum())
    false_alarm = int(((reference < 0) & (hypothesis >= 0)).sum())
    both = (reference >= 0) & (hypothesis >= 0)
    if names is not None:
        mappings = [[names.get(label, -2) for label in labels]]
    else:
        voices = range(max(len(labels), len(VOICES)))
        mappings = [list(p) for p in itertools.permutations(voices, len(labels))]
    confusion = min(
        int((np.array(mapping)[hypothesis[both]] != reference[both]).sum()) for mapping in mappings
    )
    return (missed + false_alarm + confusion) / speech


def diarize(
    client: openai.OpenAI, audio: bytes, **fields: object
) -> openai.types.audio.TranscriptionDiarized:
    answer = client.audio.transcriptions.create(
        model="whisper-1",
        file=("talk.wav", audio),
        response_format="diarized_json",
        **{**WHISPER, **fields},  # type: ignore[call-overload]
    )
    assert isinstance(answer, openai.types.audio.TranscriptionDiarized), answer
    return answer


def test_two_voices_in_turns_are_told_apart(
    client: openai.OpenAI, conversation: tuple[bytes, list[Turn]]
) -> None:
    audio, truth = conversation
    answer = diarize(client, audio, chunking_strategy="auto")
    assert answer.task == "transcribe" and answer.duration == pytest.approx(truth[-1][1] + PAUSE_S, abs=0.05)
    assert answer.usage is not None and answer.usage.type == "duration"
    assert {s.speaker for s in answer.segments} == {"A", "B"}
    assert answer.segments[0].speaker == "A"  # named in order of first speech
    assert all(s.type == "transcript.text.segment" and s.start < s.end for s in answer.segments)
    assert len({s.id for s in answer.segments}) == len(answer.segments)
    assert [s.start for s in answer.segments] == sorted(s.start for s in answer.segments)
    # Every word whisper heard is in one segment, in order.
    assert " ".join(s.text for s in answer.segments if s.text).split() == answer.text.split()
    der = diarization_error_rate(truth, answer.segments, None)
    assert der < 0.10, (der, [(s.start, s.end, s.speaker) for s in answer.segments])


def test_known_speakers_are_named_by_their_reference_clips(
    client: openai.OpenAI, conversation: tuple[bytes, list[Turn]], references: tuple[str, str]
) -> None:
    """The names follow the voices, not the order the references are given in: the first name
    and clip are the voice that speaks second."""
    audio, truth = conversation
    answer = diarize(
        client,
        audio,
        known_speaker_names=["host", "guest"],
        known_speaker_references=[references[1], references[0]],
        chunking_strategy={"type": "server_vad", "silence_duration_ms": 500},
    )
    assert {s.speaker for s in answer.segments} == {"guest", "host"}
    assert answer.segments[0].speaker == "guest"
    der = diarization_error_rate(truth, answer.segments, {"guest": 0, "host": 1})
    assert der < 0.10, (der, [(s.start, s.end, s.speaker) for s in answer.segments])


def test_stream_sends_each_turn_then_done(
    client: openai.OpenAI, conversation: tuple[bytes, list[Turn]]
) -> None:
    audio, truth = conversation
    events = list(
        client.audio.transcriptions.create(
            model="whisper-1",
            file=("talk.wav", audio),
            response_format="diarized_json",
            stream=True,
            language="en",
            temperature=0.5,
        )
    )
    done = events[-1]
    assert done.type == "transcript.text.done" and done.usage is not None
    assert done.usage.type == "duration" and done.usage.seconds == pytest.approx(
        truth[-1][1] + PAUSE_S, abs=0.05
    )
    segments = events[:-1]
    assert segments and all(event.type == "transcript.text.segment" for event in segments)
    assert diarization_error_rate(truth, segments, None) < 0.10


def test_bad_known_speakers_get_400_naming_the_field(
    diarizing_gateway: str, references: tuple[str, str]
) -> None:
    url = diarizing_gateway + "/v1/audio/transcriptions"
    audio = _wav(_speech("Hello there.", VOICES[0]))
    short = _data_url(_speech("Hi.", VOICES[0]))
    not_audio = "data:audio/wav;base64," + base64.b64encode(b"not audio at all" * 50).decode()
    diarized = {"model": "whisper-1", "response_format": "diarized_json"}
    cases: list[tuple[dict[str, object], str]] = [
        (
            {
                **diarized,
                "known_speaker_names[]": list("abcde"),
                "known_speaker_references[]": [references[0]] * 5,
            },
            "known_speaker_references",
        ),
        (
            {**diarized, "known_speaker_names[]": ["a"], "known_speaker_references[]": list(references)},
            "known_speaker_names",
        ),
        (
            {**diarized, "known_speaker_names[]": ["a", "a"], "known_speaker_references[]": list(references)},
            "known_speaker_names",
        ),
        (
            {**diarized, "known_speaker_names[]": ["a"], "known_speaker_references[]": ["https://x/a.wav"]},
            "known_speaker_references[0]",
        ),
        (
            {
                **diarized,
                "known_speaker_names[]": ["a", "b"],
                "known_speaker_references[]": [references[0], "data:audio/wav;base64,@@"],
            },
            "known_speaker_references[1]",
        ),
        (
            {**diarized, "known_speaker_names[]": ["a"], "known_speaker_references[]": [not_audio]},
            "known_speaker_references[0]",
        ),
        (
            {**diarized, "known_speaker_names[]": ["a"], "known_speaker_references[]": [short]},
            "known_speaker_references[0]",
        ),
        (
            {
                "model": "whisper-1",
                "known_speaker_names[]": ["a"],
                "known_speaker_references[]": [references[0]],
            },
            "known_speaker_names",
        ),
        ({**diarized, "chunking_strategy": "sometimes"}, "chunking_strategy"),
        ({**diarized, "timestamp_granularities[]": ["word"]}, "timestamp_granularities"),
    ]
    for form, param in cases:
        response = httpx.post(url, data=form, files={"file": ("a.wav", audio)}, timeout=120)
        assert response.status_code == 400, (param, response.text)
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"} and error["param"] == param, (form, error)
    translation = httpx.post(
        diarizing_gateway + "/v1/audio/translations", data=diarized, files={"file": ("a.wav", audio)}
    )
    assert translation.status_code == 400 and translation.json()["error"]["param"] == "response_format"


def test_the_other_formats_stream_and_refuse_as_before(diarizing_gateway: str, client: openai.OpenAI) -> None:
    """The text stream shares its SSE plumbing with the diarized one; a bad field still names itself."""
    audio = _wav(_speech("Hello there, how are you?", VOICES[0]))
    events = list(
        client.audio.transcriptions.create(model="whisper-1", file=("a.wav", audio), stream=True, **WHISPER)  # type: ignore[call-overload]
    )
    assert events[-1].type == "transcript.text.done"
    assert all(event.type == "transcript.text.delta" for event in events[:-1])
    response = httpx.post(
        diarizing_gateway + "/v1/audio/transcriptions",
        data={"model": "whisper-1", "temperature": "9"},
        files={"file": ("a.wav", audio)},
    )
    assert response.status_code == 400 and response.json()["error"]["param"] == "temperature"
