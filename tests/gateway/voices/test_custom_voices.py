"""Custom voices through the real openai SDK (httpx where it has no method) against a real gateway
(auth on, the session's Redis and SQLite store, blobs on disk): consent recordings and voices made,
listed, renamed and deleted within their tenant; every bad input in OpenAI's envelope; another
tenant's ids are 404s everywhere, in /v1/audio/speech and chat's spoken answers too, before any
synthesis; a clip in another speaker's voice than its consent's is refused; a gateway without an
XTTS model says why it cannot speak a custom voice."""

from __future__ import annotations

import io
import wave
from typing import Any, cast

import httpx
import openai
import pytest

from gateway.protocol.realtime import ResponseOptions, SessionUpdate
from tests.audio_samples import espeak_wav, needs_espeak
from tests.gateway.helpers import bearer, envelope
from tests.gateway.voices.conftest import VoicesGateway

pytestmark = needs_espeak


def _tone(seconds: float) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(16_000)
        writer.writeframes(b"\x10\x00\xf0\xff" * int(8_000 * seconds))
    return out.getvalue()


def _consent(client: openai.OpenAI, clip: bytes, name: str = "Jo Doe") -> Any:
    return client.audio.voice_consents.create(
        name=name, language="en-US", recording=("consent.wav", clip, "audio/wav")
    )


def _voice(client: openai.OpenAI, clip: bytes, consent: str, name: str = "Jo") -> Any:
    return client.audio.voices.create(name=name, consent=consent, audio_sample=("jo.wav", clip, "audio/wav"))


def _blobs(gateway: VoicesGateway) -> set[bytes]:
    return {path.read_bytes() for path in gateway.blob_dir.rglob("*") if path.is_file()}


def _blob_paths(gateway: VoicesGateway) -> set[str]:
    return {str(path) for path in gateway.blob_dir.rglob("*") if path.is_file()}


def test_consents_and_voices_are_made_listed_and_deleted(gateway: VoicesGateway, speech_clip: bytes) -> None:
    key = gateway.tenant_key("voices")
    with gateway.client(key) as client:
        consent = _consent(client, speech_clip)
        assert consent.id.startswith("cons_") and consent.object == "audio.voice_consent"
        assert (consent.name, consent.language) == ("Jo Doe", "en-US")
        assert speech_clip in _blobs(gateway)  # the consent recording kept as sent: the evidence
        assert client.audio.voice_consents.retrieve(consent.id) == consent
        renamed = client.audio.voice_consents.update(consent.id, name="Jo Doe (2026)")
        assert renamed.name == "Jo Doe (2026)"
        second = _consent(client, speech_clip, "Al")
        assert [c.id for c in client.audio.voice_consents.list()] == [second.id, consent.id]
        page = client.audio.voice_consents.list(limit=1)
        assert [c.id for c in page.data] == [second.id] and page.has_more

        voice = _voice(client, speech_clip, consent.id)
        assert voice.id.startswith("voice_") and voice.object == "audio.voice" and voice.name == "Jo"
        url = gateway.url + "/v1/audio/voices"
        got = httpx.get(f"{url}/{voice.id}", headers=bearer(key)).json()
        assert got | {"created_at": 0} == {
            "id": voice.id, "object": "audio.voice", "name": "Jo", "type": "audio_sample",
            "created_at": 0, "consent": consent.id,
        }  # fmt: skip
        listed = httpx.get(url, params={"type": "audio_sample"}, headers=bearer(key)).json()
        assert [v["id"] for v in listed["data"]] == [voice.id] and listed["has_more"] is False
        assert client.audio.voices.delete(voice.id).deleted
        assert envelope(httpx.get(f"{url}/{voice.id}", headers=bearer(key)), 404)["code"] == "voice_not_found"

        # Withdrawing a consent deletes the voices made under it, and their clips.
        again = _voice(client, speech_clip, second.id, "Al")
        before = _blob_paths(gateway)
        deleted = client.audio.voice_consents.delete(second.id)
        assert (deleted.id, deleted.deleted) == (second.id, True)
        assert envelope(httpx.get(f"{url}/{again.id}", headers=bearer(key)), 404)["param"] == "voice_id"
        assert len(before - _blob_paths(gateway)) == 2
        with pytest.raises(openai.NotFoundError):
            client.audio.voice_consents.retrieve(second.id)


def test_a_clip_in_another_voice_than_the_consents_is_refused(gateway: VoicesGateway) -> None:
    # eSpeak NG's female variant 2 and its default voice are told apart by Resemblyzer's encoder
    # (about 0.66 alike; the same voice reading the two texts, about 0.90).
    consent_clip = espeak_wav(
        "I am the owner of this voice and I agree to a synthetic version.", voice="en-us+f2"
    )
    with gateway.client(gateway.tenant_key("voices-speaker")) as client:
        consent = _consent(client, consent_clip)
        sample = "The quick brown fox jumps over the lazy dog, twice over."
        with pytest.raises(openai.BadRequestError) as refused:
            _voice(client, espeak_wav(sample), consent.id)
        error = cast(dict[str, Any], refused.value.body)
        assert (error["code"], error["param"]) == ("voice_consent_mismatch", "audio_sample")
        assert consent.id in error["message"]
        assert _voice(client, espeak_wav(sample, voice="en-us+f2"), consent.id).id.startswith("voice_")


def test_bad_inputs_get_openai_errors(gateway: VoicesGateway, speech_clip: bytes) -> None:
    key = gateway.tenant_key("voices-bad")
    url = gateway.url + "/v1/audio/voice_consents"
    cases: list[tuple[dict[str, Any], dict[str, Any], int, str, str | None]] = [
        ({"name": "a", "language": "en"}, {"recording": ("a.txt", b"not audio at all")}, 400, "recording",
         "invalid_audio"),
        ({"name": "a", "language": "en"}, {"recording": ("a.wav", _tone(0.5))}, 400, "recording",
         "audio_too_short"),
        ({"name": "a", "language": "en"}, {"recording": ("a.wav", _tone(61))}, 400, "recording",
         "audio_too_long"),
        ({"language": "en"}, {"recording": ("a.wav", speech_clip)}, 400, "name", None),
        ({"name": "a", "language": "not a tag!"}, {"recording": ("a.wav", speech_clip)}, 400, "language",
         "invalid_value"),
        ({"name": "a", "language": "en"}, {}, 400, "recording", None),
    ]  # fmt: skip
    for data, files, status, param, code in cases:
        error = envelope(
            httpx.post(url, data=data, files=files or {"x": ("x", b"")}, headers=bearer(key)), status
        )
        assert (error["param"], error["code"] if code else None) == (param, code), error
    error = envelope(httpx.post(url, json={"name": "a"}, headers=bearer(key)), 400)
    assert error["code"] == "invalid_content_type"
    with gateway.client(key) as client:
        assert list(client.audio.voice_consents.list()) == []  # nothing refused was kept
        # A voice needs a consent of the tenant's, and a clip that is audio.
        with pytest.raises(openai.NotFoundError) as missing:
            _voice(client, speech_clip, "cons_nope")
        assert missing.value.body["param"] == "consent"  # type: ignore[index]
        consent = _consent(client, speech_clip)
        with pytest.raises(openai.BadRequestError) as bad:
            client.audio.voices.create(name="x", consent=consent.id, audio_sample=("x.mp3", b"ID3 junk"))
        assert bad.value.body["param"] == "audio_sample"  # type: ignore[index]
        with pytest.raises(openai.BadRequestError) as unnamed:
            client.audio.voice_consents.update(consent.id, name="")
        assert unnamed.value.body["param"] == "name"  # type: ignore[index]


def test_another_tenants_voices_are_not_found(gateway: VoicesGateway, speech_clip: bytes) -> None:
    owner, stranger = gateway.tenant_key("voices-a"), gateway.tenant_key("voices-b")
    with gateway.client(owner) as mine, gateway.client(stranger) as theirs:
        consent = _consent(mine, speech_clip)
        voice = _voice(mine, speech_clip, consent.id)
        with pytest.raises(openai.NotFoundError):
            theirs.audio.voice_consents.retrieve(consent.id)
        with pytest.raises(openai.NotFoundError):
            theirs.audio.voice_consents.delete(consent.id)
        with pytest.raises(openai.NotFoundError):
            theirs.audio.voices.delete(voice.id)
        with pytest.raises(openai.NotFoundError):  # nor may a voice be made under another's consent
            _voice(theirs, speech_clip, consent.id)
        assert list(theirs.audio.voice_consents.list()) == []
        listed = httpx.get(gateway.url + "/v1/audio/voices?type=audio_sample", headers=bearer(stranger))
        assert listed.json()["data"] == []

        # Speaking it: 404 for the stranger (and for an unknown id), before any synthesis; for its
        # owner, a gateway with no XTTS model says why it cannot.
        for client, voice_id, status, code in (
            (theirs, voice.id, 404, "voice_not_found"),
            (mine, "voice_unknown", 404, "voice_not_found"),
            (mine, voice.id, 400, "custom_voices_unavailable"),
        ):
            body = {"model": "tts-1", "input": "Hello.", "voice": {"id": voice_id}}
            answer = httpx.post(gateway.url + "/v1/audio/speech", json=body, headers=bearer(client.api_key))
            assert envelope(answer, status)["code"] == code
            chat = {
                "model": "tantra-tiny",
                "modalities": ["text", "audio"],
                "audio": {"voice": {"id": voice_id}, "format": "wav"},
                "messages": [{"role": "user", "content": "Hi"}],
            }
            answer = httpx.post(
                gateway.url + "/v1/chat/completions", json=chat, headers=bearer(client.api_key)
            )
            error = envelope(answer, status)
            assert (error["code"], error["param"]) == (code, "audio.voice")
        # The owner still has both.
        assert mine.audio.voice_consents.retrieve(consent.id).id == consent.id


def test_realtime_sessions_take_a_custom_voice_as_openai_names_it() -> None:
    """GA's `audio.output.voice: {"id": ...}` (and beta's `voice`) reaches /v1/audio/speech as the id."""
    assert SessionUpdate.model_validate({"voice": {"id": "voice_abc"}}).voice == "voice_abc"
    assert ResponseOptions.model_validate({"voice": {"id": "voice_abc"}}).voice == "voice_abc"
    assert SessionUpdate.model_validate({"voice": "alloy"}).voice == "alloy"


def test_a_session_echoes_a_custom_voice_as_openai_names_it() -> None:
    """session.created/updated give a custom voice back as `{"id": ...}` (beta `voice`, GA
    `audio.output.voice`), a named voice as its name."""
    from gateway.realtime.ga import server_event
    from gateway.realtime.session_config import SessionConfig

    config = SessionConfig(id="sess_1", model="m")
    config.update(SessionUpdate.model_validate({"voice": {"id": "voice_abc"}}))
    assert config.describe()["voice"] == {"id": "voice_abc"}
    ga = server_event({"type": "session.updated", "session": config.describe()})
    assert ga["session"]["audio"]["output"]["voice"] == {"id": "voice_abc"}
    config.update(SessionUpdate.model_validate({"voice": "alloy"}))
    assert config.describe()["voice"] == "alloy"
