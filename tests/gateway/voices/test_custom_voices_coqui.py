"""Custom voices spoken end to end: two tenants' consented reference clips uploaded through the openai
SDK become voices that /v1/audio/speech speaks with XTTS conditioned on each clip, in Coqui's worker
(an XTTS v2 model built here with random weights, tests/coqui_models.py, once for the module): two
different clips give different audio for the same text, the same clip the same audio. Skipped
without Coqui's venv (`make coqui`)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import openai
import pytest

from gateway import Settings
from tests.audio_samples import decode, espeak_wav, needs_espeak
from tests.gateway.voices.conftest import VoicesGateway, voices_gateway

ROOT = Path(__file__).resolve().parents[3]
COQUI_PYTHON = Path(os.environ.get("TANTRA_TTS_COQUI_PYTHON", ROOT / ".venv-coqui" / "bin" / "python"))

pytestmark = [
    needs_espeak,
    pytest.mark.skipif(
        not COQUI_PYTHON.exists(), reason=f"Coqui's venv is absent ({COQUI_PYTHON}): run `make coqui`"
    ),
]


@pytest.fixture(scope="module")
def xtts_gateway(
    gateway_settings: Callable[..., Settings], admin_key: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[VoicesGateway]:
    folder = tmp_path_factory.mktemp("coqui") / "xtts"
    builder = [str(COQUI_PYTHON), str(ROOT / "tests" / "coqui_models.py"), "xtts", str(folder)]
    subprocess.run(builder, check=True, capture_output=True, timeout=900)
    settings = gateway_settings(
        tts_coqui_models={"xtts": folder},
        tts_coqui_python=COQUI_PYTHON,
        tts_coqui_clone_model="xtts",
        voices_clip_cache=str(tmp_path_factory.mktemp("voice-clips")),
    )
    yield from voices_gateway(settings, admin_key)


def _speak(client: openai.OpenAI, voice_id: str) -> bytes:
    spoken = client.audio.speech.create(
        model="tts-1", voice={"id": voice_id}, input="Hello there.", response_format="wav"
    )
    return spoken.read()


def test_two_clips_speak_differently(xtts_gateway: VoicesGateway) -> None:
    voices = []
    for name, espeak_voice in (("low", "en-us"), ("high", "en-gb+f4")):
        key = xtts_gateway.tenant_key(f"xtts-{name}")
        client = xtts_gateway.client(key)
        consent_clip = espeak_wav("I agree to have a synthetic version of my voice made.", voice=espeak_voice)
        consent = client.audio.voice_consents.create(
            name=name, language="en", recording=("consent.wav", consent_clip, "audio/wav")
        )
        clip = espeak_wav("The quick brown fox jumps over the lazy dog, twice over.", voice=espeak_voice)
        voice = client.audio.voices.create(name=name, consent=consent.id, audio_sample=("clip.wav", clip))
        voices.append((client, voice.id))
    (first_client, first), (second_client, second) = voices
    a, b, again = _speak(first_client, first), _speak(second_client, second), _speak(first_client, first)
    seconds, rate, channels = decode(a)
    assert seconds > 0.05 and (rate, channels) == (24_000, 1)
    assert a != b  # conditioned on each tenant's clip
    assert a == again  # and only on it
    # Each tenant speaks only its own voice.
    with pytest.raises(openai.NotFoundError):
        _speak(first_client, second)
    for client, _ in voices:
        client.close()
