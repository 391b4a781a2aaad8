"""Coqui TTS voices through the worker process in Coqui's venv (`make coqui`), on a VITS voice and an
XTTS v2 model built here with random weights in Coqui's own formats (tests/coqui_models.py): Coqui's
own loading and inference, spoken in every response format, and XTTS conditioned on a reference
clip: two different clips give different audio, the same clip the same. Skipped without the venv."""

from __future__ import annotations

import os
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
import soundfile

from adapters.tts import RESPONSE_FORMATS, EspeakBackend, SpeechUnavailable, Synthesizer
from adapters.tts.coqui import CoquiBackend

ROOT = Path(__file__).resolve().parents[2]
COQUI_PYTHON = Path(os.environ.get("TANTRA_TTS_COQUI_PYTHON", ROOT / ".venv-coqui" / "bin" / "python"))

pytestmark = pytest.mark.skipif(
    not COQUI_PYTHON.exists(), reason=f"Coqui's venv is absent ({COQUI_PYTHON}): run `make coqui`"
)


def _build(kind: str, folder: Path) -> Path:
    subprocess.run(
        [str(COQUI_PYTHON), str(ROOT / "tests" / "coqui_models.py"), kind, str(folder)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    return folder


def _clip(path: Path, seed: int) -> Path:
    """A reference clip: three seconds of a voice-like buzz, pitched and shaped by `seed`."""
    rate = 22_050
    t = np.arange(3 * rate) / rate
    rng = np.random.default_rng(seed)
    pitch = 110 + 60 * seed
    wave = np.sign(np.sin(2 * np.pi * pitch * t)) * (0.2 + 0.1 * rng.random(t.size))
    soundfile.write(path, wave.astype(np.float32), rate)
    return path


@pytest.fixture(scope="module")
async def coqui(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[CoquiBackend]:
    folder = tmp_path_factory.mktemp("coqui")
    models = {"vits": _build("vits", folder / "vits"), "xtts": _build("xtts", folder / "xtts")}
    backend = CoquiBackend(models, COQUI_PYTHON)
    backend.clone("clip-a", "xtts", _clip(folder / "a.wav", 0))
    backend.clone("clip-b", "xtts", _clip(folder / "b.wav", 1))
    yield backend
    await backend.close()


async def test_a_vits_voice_speaks_in_every_format(coqui: CoquiBackend) -> None:
    synthesizer = Synthesizer([coqui, EspeakBackend()])
    voice = await synthesizer.voice("vits")
    assert voice.backend.name == "coqui"
    for response_format in RESPONSE_FORMATS:
        audio = await synthesizer.speak("Hello there.", voice, response_format)
        assert len(audio) > 100, response_format
    pcm = np.frombuffer(await synthesizer.speak("Hello there.", voice, "pcm"), dtype="<i2")
    assert np.abs(pcm).max() > 0


async def test_xtts_speaks_as_its_reference_clip(coqui: CoquiBackend) -> None:
    a = await coqui.synthesize("Hello there.", "clip-a", 1.0)
    b = await coqui.synthesize("Hello there.", "clip-b", 1.0)
    again = await coqui.synthesize("Hello there.", "clip-a", 1.0)
    assert a.rate == 24_000 and a.seconds > 0.1
    assert a.data != b.data  # conditioned on the clip
    assert a.data == again.data  # and only on it
    synthesizer = Synthesizer([coqui])
    for response_format in ("wav", "opus"):
        audio = await synthesizer.speak("Hi.", "clip-b", response_format)
        assert len(audio) > 100, response_format


async def test_an_xtts_model_without_a_clip_and_a_missing_venv_say_why(
    coqui: CoquiBackend, tmp_path: Path
) -> None:
    with pytest.raises(SpeechUnavailable, match="reference clip"):
        await coqui.synthesize("Hello.", "xtts", 1.0)
    absent = CoquiBackend({"vits": tmp_path}, tmp_path / "no-python")
    with pytest.raises(SpeechUnavailable, match="make coqui"):
        await absent.synthesize("Hello.", "vits", 1.0)
