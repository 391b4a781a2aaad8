"""Spoken answers in chat completions (OpenAI's audio output) through the real `openai` SDK, against
the gateway in front of the session's real vLLM engine, spoken by real eSpeak NG: the JSON answer's
`message.audio` decodes (PyAV) to 24 kHz speech as long as /v1/audio/speech makes of the same
transcript and voice; a stream's transcript deltas make the transcript and its pcm16 deltas that
same audio; the ledger row carries the seconds spoken; bad `audio` is OpenAI's 400."""

from __future__ import annotations

import base64
import io
import re
import time
from pathlib import Path
from typing import Any, cast

import av
import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionAudioParam, ChatCompletionMessageParam
from transformers import AutoTokenizer

from tests.audio_samples import decode, needs_espeak
from tests.gateway.helpers import AdminClient, bearer, envelope, ledger_rows

pytestmark = [pytest.mark.engine, needs_espeak]

# The tiny model's weights are random: greedy decoding keeps its words the same from run to run,
# English-looking words and full stops only (vLLM's `allowed_token_ids`, a favoured ".") make
# sentences eSpeak reads at a speaker's pace, and few of them keep it quick.
ASK: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Tell me about the sea."}]
SAMPLING: dict[str, Any] = {"max_completion_tokens": 20, "temperature": 0}


@pytest.fixture(scope="module")
def words(tiny_checkpoint: Path) -> dict[str, Any]:
    tokenizer = AutoTokenizer.from_pretrained(tiny_checkpoint)
    ids = [i for i in range(len(tokenizer)) if re.fullmatch(r" [a-z]{2,8}", str(tokenizer.decode([i])))]
    stop = tokenizer.convert_tokens_to_ids(".")
    return {"allowed_token_ids": [*ids[:3000], stop], "logit_bias": {str(stop): 1}}


def pcm_seconds(data: bytes) -> float:
    """The length of raw s16le 24 kHz mono audio, decoded by PyAV (FFmpeg's s16le demuxer)."""
    options = {"sample_rate": "24000", "channels": "1"}
    with av.open(io.BytesIO(data), mode="r", format="s16le", options=options) as container:
        frames = list(container.decode(audio=0))
    assert frames and frames[0].sample_rate == 24_000
    return sum(frame.samples for frame in frames) / 24_000


def speech_of(gateway_url: str, key: str, text: str, voice: str, fmt: str) -> bytes:
    """What /v1/audio/speech makes of `text`: the reference a spoken chat answer must equal."""
    body = {"model": "tts-1", "voice": voice, "input": text, "response_format": fmt}
    response = httpx.post(gateway_url + "/v1/audio/speech", json=body, headers=bearer(key), timeout=120)
    assert response.status_code == 200, response.text
    return response.content


def test_json_answer_is_spoken_as_wav(
    openai_client: openai.OpenAI, model: str, gateway_url: str, api_key: str, words: dict[str, Any]
) -> None:
    answer = openai_client.chat.completions.create(
        model=model,
        messages=ASK,
        modalities=["text", "audio"],
        audio={"voice": "alloy", "format": "wav"},
        extra_body=words,
        **SAMPLING,
    )
    message = answer.choices[0].message
    assert message.content is None  # as OpenAI's: the text is the audio's transcript
    audio = message.audio
    assert audio is not None
    assert audio.id.startswith("audio_")
    assert audio.expires_at > time.time()
    assert audio.transcript.strip()
    seconds, rate, channels = decode(base64.b64decode(audio.data))
    assert (rate, channels) == (24_000, 1)
    reference = decode(speech_of(gateway_url, api_key, audio.transcript, "alloy", "wav"))[0]
    assert seconds == pytest.approx(reference, abs=0.02), (seconds, reference)
    # Plausible speech: eSpeak at 175 words a minute says 4 to 40 characters a second of text.
    assert len(audio.transcript) / 40 <= seconds <= len(audio.transcript) / 4 + 1
    assert answer.usage is not None
    assert answer.usage.completion_tokens_details is not None
    assert answer.usage.completion_tokens_details.audio_tokens == 0
    speech = answer.usage.model_extra["tantra_speech"] if answer.usage.model_extra else None
    assert speech == {"seconds": pytest.approx(seconds, abs=0.01), "characters": len(audio.transcript)}


@pytest.mark.parametrize("fmt", ["mp3", "flac", "opus", "aac"])
def test_json_answer_in_every_format(
    openai_client: openai.OpenAI, model: str, fmt: str, words: dict[str, Any]
) -> None:
    answer = openai_client.chat.completions.create(
        model=model,
        messages=ASK,
        modalities=["text", "audio"],
        audio=cast(ChatCompletionAudioParam, {"voice": "nova", "format": fmt}),
        extra_body=words,
        **SAMPLING,
    )
    audio = answer.choices[0].message.audio
    assert audio is not None
    seconds, rate, channels = decode(base64.b64decode(audio.data))
    assert seconds > 0.3 and channels == 1
    assert rate in (24_000, 48_000)  # Ogg Opus decodes at 48 kHz


def test_stream_speaks_pcm16_sentence_by_sentence(
    openai_client: openai.OpenAI, model: str, gateway_url: str, api_key: str, words: dict[str, Any]
) -> None:
    stream = openai_client.chat.completions.create(
        model=model,
        messages=ASK,
        modalities=["text", "audio"],
        audio={"voice": "alloy", "format": "pcm16"},
        stream=True,
        stream_options={"include_usage": True},
        extra_body=words,
        **SAMPLING,
    )
    pieces: list[str] = []
    data: list[bytes] = []
    ids: list[str] = []
    expiries: list[int] = []
    finish: list[str] = []
    usage = None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            assert choice.delta.content is None
            if choice.finish_reason is not None:
                finish.append(choice.finish_reason)
            audio = choice.delta.model_extra.get("audio") if choice.delta.model_extra else None
            audio = audio if audio is not None else choice.delta.audio
            if audio is None:
                continue
            audio = audio if isinstance(audio, dict) else audio.model_dump(exclude_none=True)
            assert not finish, "no audio after the finish event"
            if "id" in audio:
                ids.append(audio["id"])
            if "transcript" in audio:
                pieces.append(audio["transcript"])
            if "data" in audio:
                assert ids, "the first audio delta names the audio"
                data.append(base64.b64decode(audio["data"]))
            if "expires_at" in audio:
                expiries.append(audio["expires_at"])
    transcript = "".join(pieces)
    assert len(ids) == 1 and ids[0].startswith("audio_")
    assert len(expiries) == 1 and expiries[0] > time.time()
    assert finish in (["length"], ["stop"])
    assert transcript.strip() and len(data) >= 1
    seconds = pcm_seconds(b"".join(data))
    reference = len(speech_of(gateway_url, api_key, transcript, "alloy", "pcm")) / 2 / 24_000
    assert seconds == pytest.approx(reference, abs=0.05), (seconds, reference)
    assert usage is not None and usage.completion_tokens > 0
    assert usage.model_extra and usage.model_extra["tantra_speech"]["seconds"] == pytest.approx(
        seconds, abs=0.01
    )


def test_stream_in_wav_is_one_file(openai_client: openai.OpenAI, model: str, words: dict[str, Any]) -> None:
    """Formats other than pcm16 stream too: the data deltas put together are one file."""
    stream = openai_client.chat.completions.create(
        model=model,
        messages=ASK,
        modalities=["text", "audio"],
        audio={"voice": "echo", "format": "wav"},
        stream=True,
        extra_body=words,
        **SAMPLING,
    )
    data = b""
    for chunk in stream:
        for choice in chunk.choices:
            if choice.delta.audio is not None and choice.delta.audio.data:
                data += base64.b64decode(choice.delta.audio.data)
    seconds, rate, _ = decode(data)
    assert seconds > 0.3 and rate == 24_000


def test_plain_chat_is_unchanged(openai_client: openai.OpenAI, model: str, words: dict[str, Any]) -> None:
    for modalities in (None, ["text"]):
        extra = {} if modalities is None else {"modalities": modalities}
        answer = openai_client.chat.completions.create(
            model=model, messages=ASK, extra_body={**extra, **words}, **SAMPLING
        )
        message = answer.choices[0].message
        assert isinstance(message.content, str) and message.audio is None


def test_the_ledger_has_the_seconds_spoken(
    gateway_url: str, admin: AdminClient, database_url: str, model: str, words: dict[str, Any]
) -> None:
    tenant = admin.tenant("chat-audio-ledger")
    secret, record = admin.key(tenant["id"], "chat-audio")
    body = {
        "model": model,
        "messages": ASK,
        "modalities": ["text", "audio"],
        "audio": {"voice": "alloy", "format": "wav"},
        **words,
        **SAMPLING,
    }
    response = httpx.post(
        gateway_url + "/v1/chat/completions", json=body, headers=bearer(secret), timeout=120
    )
    assert response.status_code == 200, response.text
    audio = response.json()["choices"][0]["message"]["audio"]
    [row] = ledger_rows(database_url, record["id"], 1)
    assert row.endpoint == "/v1/chat/completions" and row.model == model
    assert row.audio_seconds == pytest.approx(decode(base64.b64decode(audio["data"]))[0], abs=0.01)
    assert row.completion_tokens == response.json()["usage"]["completion_tokens"]


@pytest.mark.parametrize(
    ("fields", "param", "code"),
    [
        ({"modalities": ["text", "audio"]}, "audio", "missing_required_parameter"),
        (
            {"modalities": ["text", "audio"], "audio": {"voice": "alloy"}},
            "audio.format",
            "missing_required_parameter",
        ),
        (
            {"modalities": ["text", "audio"], "audio": {"format": "wav"}},
            "audio.voice",
            "missing_required_parameter",
        ),
        (
            {"modalities": ["text", "audio"], "audio": {"voice": "alloy", "format": "ogg"}},
            "audio.format",
            "invalid_value",
        ),
        (
            {"modalities": ["text", "audio"], "audio": {"voice": "no-such", "format": "wav"}},
            "audio.voice",
            "invalid_value",
        ),
        ({"modalities": ["text", "audio"], "audio": "alloy"}, "audio", "invalid_type"),
        (
            {"modalities": ["text", "audio"], "audio": {"voice": "alloy", "format": "wav"}, "n": 2},
            "n",
            "unsupported_value",
        ),
    ],
)
def test_bad_audio_is_openais_400(
    gateway_url: str, api_key: str, model: str, fields: dict[str, Any], param: str, code: str
) -> None:
    body = {"model": model, "messages": ASK, "max_completion_tokens": 4, **fields}
    response = httpx.post(
        gateway_url + "/v1/chat/completions", json=body, headers=bearer(api_key), timeout=60
    )
    error = envelope(response, 400)
    assert (error["param"], error["code"], error["type"]) == (param, code, "invalid_request_error"), error


def test_openai_sdk_raises_for_missing_audio(openai_client: openai.OpenAI, model: str) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        openai_client.chat.completions.create(
            model=model, messages=ASK, modalities=["text", "audio"], **SAMPLING
        )
    assert raised.value.param == "audio"


def test_tools_still_work_with_audio(openai_client: openai.OpenAI, model: str, words: dict[str, Any]) -> None:
    """Tools and their template reach the engine with audio output asked for (a tool-call answer has
    no audio: test_spoken_answers.py, whose stand-in engine calls tools on demand)."""
    answer = openai_client.chat.completions.create(
        model=model,
        messages=ASK,
        modalities=["text", "audio"],
        audio={"voice": "coral", "format": "mp3"},
        tools=[{"type": "function", "function": {"name": "tide", "parameters": {"type": "object"}}}],
        tool_choice="none",
        extra_body={**words, "logit_bias": None},  # with tools in the prompt, a favoured "." is all it says
        **SAMPLING,
    )
    audio = answer.choices[0].message.audio
    assert audio is not None, answer
    data = base64.b64decode(audio.data)
    assert len(data) > 1000, (audio.transcript, data[:100])
    assert decode(data)[0] > 0.3, audio.transcript
