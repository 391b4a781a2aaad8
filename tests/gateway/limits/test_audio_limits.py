"""Audio seconds through the gateway: the per-key and per-tenant `audio_spm` limit on transcriptions
and chat audio parts (reserved once the audio is decoded, before whisper runs), and the audio seconds
and media usage the ledger records. The real gateway, Redis, whisper.cpp and engine."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest

from tests.adapters.media import data_url, text_video
from tests.audio import speech_file
from tests.audio_samples import needs_espeak, spoken_sentence
from tests.gateway.helpers import AdminClient, bearer, envelope, ledger_rows

pytestmark = pytest.mark.engine

WAV = speech_file("wav", seconds=2.0)
AUDIO_PART = {"type": "input_audio", "input_audio": {"data": base64.b64encode(WAV).decode(), "format": "wav"}}


def transcribe(url: str, key: str, path: str = "/v1/audio/transcriptions") -> httpx.Response:
    return httpx.post(
        url + path,
        headers=bearer(key),
        data={"model": "whisper-1"},
        files={"file": ("a.wav", WAV)},
        timeout=120,
    )


def chat_with_audio(url: str, key: str, model: str) -> httpx.Response:
    messages = [{"role": "user", "content": [{"type": "text", "text": "What was said?"}, AUDIO_PART]}]
    return httpx.post(
        url + "/v1/chat/completions",
        headers=bearer(key),
        json={"model": model, "messages": messages, "max_tokens": 2},
        timeout=120,
    )


def new_key(admin: AdminClient, name: str, **limits: Any) -> tuple[str, str]:
    tenant = admin.tenant(name)
    secret, record = admin.key(tenant["id"], name, **limits)
    return secret, record["id"]


def audio_limited(response: httpx.Response, limit: str) -> dict[str, Any]:
    error = envelope(response, 429)
    assert (error["type"], error["code"]) == ("audio_seconds", "rate_limit_exceeded")
    assert 1 <= int(response.headers["retry-after"]) <= 60
    assert 0 < int(response.headers["retry-after-ms"]) <= 60_000
    assert response.headers["x-ratelimit-limit-audio-seconds"] == limit
    assert response.headers["x-ratelimit-remaining-audio-seconds"] == "0"
    assert response.headers["x-ratelimit-reset-audio-seconds"]
    return error


def test_transcriptions_within_the_audio_seconds_limit(gateway_url: str, admin: AdminClient) -> None:
    key, _ = new_key(admin, "aspm-transcribe", audio_spm=3)
    first = transcribe(gateway_url, key)
    assert first.status_code == 200, first.text
    assert first.headers["x-ratelimit-limit-audio-seconds"] == "3"
    assert first.headers["x-ratelimit-remaining-audio-seconds"] == "1"
    error = audio_limited(transcribe(gateway_url, key, "/v1/audio/translations"), "3")
    assert "Limit 3, Requested 2" in error["message"]


def test_the_tenant_limit_is_shared_by_its_keys(gateway_url: str, admin: AdminClient) -> None:
    tenant = admin.tenant("aspm-tenant", audio_spm=5)
    one, _ = admin.key(tenant["id"], "one")
    two, _ = admin.key(tenant["id"], "two")
    assert transcribe(gateway_url, one).status_code == 200
    assert transcribe(gateway_url, two).headers["x-ratelimit-remaining-audio-seconds"] == "1"
    audio_limited(transcribe(gateway_url, one), "5")


def test_without_the_limit_audio_is_unlimited(gateway_url: str, admin: AdminClient) -> None:
    key, _ = new_key(admin, "aspm-none", rpm=100)
    for _ in range(3):
        response = transcribe(gateway_url, key)
        assert response.status_code == 200, response.text
        assert "x-ratelimit-limit-audio-seconds" not in response.headers
        assert response.headers["x-ratelimit-limit-requests"] == "100"


def test_chat_audio_parts_count_against_the_limit(gateway_url: str, admin: AdminClient, model: str) -> None:
    key, _ = new_key(admin, "aspm-chat", audio_spm=3)
    first = chat_with_audio(gateway_url, key, model)
    assert first.status_code == 200, first.text
    assert first.headers["x-ratelimit-remaining-audio-seconds"] == "1"
    audio_limited(chat_with_audio(gateway_url, key, model), "3")
    # Text alone is not audio: the same key still chats.
    text = httpx.post(
        gateway_url + "/v1/chat/completions",
        headers=bearer(key),
        json={"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2},
        timeout=120,
    )
    assert text.status_code == 200, text.text


def test_admin_api_round_trips_the_limit(admin: AdminClient) -> None:
    tenant = admin.tenant("aspm-admin", audio_spm=600)
    assert tenant["limits"]["audio_spm"] == 600
    _, key = admin.key(tenant["id"], "k", audio_spm=60)
    assert key["limits"]["audio_spm"] == 60
    assert admin.http.get(f"/admin/keys/{key['id']}").json()["limits"]["audio_spm"] == 60
    assert admin.patch_key(key["id"], audio_spm=None)["limits"]["audio_spm"] is None
    assert admin.patch_tenant(tenant["id"], audio_spm=30)["limits"]["audio_spm"] == 30
    refused = admin.http.patch(f"/admin/keys/{key['id']}", json={"audio_spm": 0})
    assert refused.status_code == 400, refused.text


def test_the_ledger_records_audio_seconds_and_media(
    gateway_url: str, admin: AdminClient, database_url: str, model: str
) -> None:
    key, key_id = new_key(admin, "aspm-ledger")
    assert transcribe(gateway_url, key).status_code == 200
    assert chat_with_audio(gateway_url, key, model).status_code == 200
    transcription, chat = ledger_rows(database_url, key_id, 2)
    assert transcription.endpoint == "/v1/audio/transcriptions"
    assert transcription.audio_seconds == pytest.approx(2.0, abs=0.05) and transcription.media is None
    assert chat.audio_seconds == pytest.approx(2.0, abs=0.05)
    assert chat.media["audios"] == 1 and "transcription" in chat.media["derived"]
    (total,) = admin.usage(key_id=key_id, group_by="key")
    assert total["audio_seconds"] == pytest.approx(4.0, abs=0.1) and total["media_requests"] == 1
    csv_text = admin.http.get(
        "/admin/usage", params={"key_id": key_id, "group_by": "key", "format": "csv"}
    ).text
    assert "audio_seconds,media_requests" in csv_text.splitlines()[0]


@needs_espeak
def test_a_video_soundtrack_counts_against_the_limit(
    gateway_url: str, admin: AdminClient, model: str
) -> None:
    video = text_video(["RED SUNRISE"], soundtrack=spoken_sentence())
    part = {"type": "video_url", "video_url": {"url": data_url(video, "video/mp4")}}
    messages = [{"role": "user", "content": [{"type": "text", "text": "What is in it?"}, part]}]
    key, _ = new_key(admin, "aspm-video", audio_spm=1)
    response = httpx.post(
        gateway_url + "/v1/chat/completions",
        headers=bearer(key),
        json={"model": model, "messages": messages, "max_tokens": 2},
        timeout=120,
    )
    error = envelope(response, 429)
    assert error["type"] == "audio_seconds" and response.headers["x-should-retry"] == "false"
    assert response.headers["x-ratelimit-limit-audio-seconds"] == "1"
