"""The Coqui TTS speech worker: run by the Coqui venv's interpreter as a script (not imported by the
gateway), since coqui-tts wants torchaudio and torchcodec builds that break vLLM's import in the
main venv (`make coqui` builds that venv; docs/audio.md, "Coqui TTS").

    .venv-coqui/bin/python adapters/tts/coqui_worker.py

One request per line on stdin, one answer per line on stdout, both JSON:
`{"model": DIR, "text": ..., "speed": 1.0, "language": "en", "speaker_wav": CLIP}` ->
`{"rate": 24000, "pcm": BASE64}` (mono s16le) or `{"error": ...}`. A model is a Coqui model
directory as Coqui's trainer writes it (its `config.json` beside the checkpoint, `model.pth` or
`best_model.pth`; XTTS's also `vocab.json`), loaded on its first request and kept. Only the standard
library, numpy, soundfile and coqui-tts are imported here.
"""

from __future__ import annotations

import base64
import contextlib
import json
import sys
from pathlib import Path
from typing import Any

_CHECKPOINTS = ("model.pth", "best_model.pth", "model_file.pth", "checkpoint.pth")


def _load_clip(path: str, sampling_rate: int) -> Any:
    """XTTS's reference clip through soundfile: Coqui's own loader goes through torchcodec, which
    needs FFmpeg's shared libraries."""
    import soundfile
    import torch
    import torchaudio

    samples, rate = soundfile.read(path, dtype="float32", always_2d=True)
    audio = torch.from_numpy(samples.T.copy()).mean(dim=0, keepdim=True)
    if rate != sampling_rate:
        audio = torchaudio.functional.resample(audio, rate, sampling_rate)
    return audio.clip_(-1, 1)


def _load(folder: Path) -> Any:
    from TTS.tts.models import xtts
    from TTS.utils.synthesizer import Synthesizer

    xtts.load_audio = _load_clip
    config = folder / "config.json"
    kind = json.loads(config.read_text(encoding="utf-8")).get("model", "")
    if kind == "xtts":
        return Synthesizer(tts_checkpoint=folder, tts_config_path=config)
    checkpoint = next((folder / name for name in _CHECKPOINTS if (folder / name).is_file()), None)
    if checkpoint is None:
        raise FileNotFoundError(f"no checkpoint ({', '.join(_CHECKPOINTS)}) in {folder}")
    return Synthesizer(tts_checkpoint=checkpoint, tts_config_path=config)


def _speak(synthesizer: Any, request: dict[str, Any], latents: dict[str, Any]) -> dict[str, Any]:
    import numpy as np
    import torch

    model = synthesizer.tts_model
    speed = float(request.get("speed", 1.0))
    torch.manual_seed(0)  # the same text, voice and clip speak alike every time
    if type(model).__name__ == "Xtts":
        clip = request.get("speaker_wav")
        if not clip:
            raise ValueError("an XTTS model speaks a cloned voice: it needs a reference clip")
        if clip not in latents:  # conditioning on a clip is the slow part: once per clip
            latents[clip] = model.get_conditioning_latents(audio_path=[clip])
        latent, speaker = latents[clip]
        language = request.get("language") or "en"
        with torch.inference_mode():
            wave = model.inference(request["text"], language, latent, speaker, speed=speed)["wav"]
    else:  # VITS and the rest: speed is the inverse of the length scale
        if hasattr(model, "length_scale"):
            model.length_scale = float(model.args.length_scale) / speed
        wave = synthesizer.tts(request["text"], split_sentences=False)
    samples = np.asarray(wave.cpu() if hasattr(wave, "cpu") else wave, dtype=np.float32).reshape(-1)
    pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2").tobytes()
    return {"rate": int(synthesizer.output_sample_rate), "pcm": base64.b64encode(pcm).decode()}


def main() -> None:
    answers = sys.stdout
    sys.stdout = sys.stderr  # Coqui prints as it loads: only answers go to the gateway
    loaded: dict[str, Any] = {}
    latents: dict[str, Any] = {}
    for line in sys.stdin:
        try:
            request = json.loads(line)
            folder = str(request["model"])
            if folder not in loaded:
                loaded[folder] = _load(Path(folder))
            answer = _speak(loaded[folder], request, latents)
        except Exception as exc:  # one request's failure is its answer; the worker goes on
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        answers.write(json.dumps(answer) + "\n")
        answers.flush()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
