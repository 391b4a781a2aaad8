"""Random-weight Whisper models in whisper.cpp's ggml format, for the speech-to-text adapter.

No model can be downloaded here, so `python -m engine build-checkpoint --preset whisper-tiny`
initialises a `transformers` WhisperForConditionalGeneration of the real tiny shape from a seed and
writes it exactly as whisper.cpp's own converter (`models/convert-h5-to-ggml.py`) does: the magic,
the hyperparameters, the 80-band mel filters, the byte-level BPE vocabulary, then every tensor
under whisper.cpp's names (2-D and larger in f16, the rest and the positional embeddings in f32).
whisper.cpp then loads and runs it like a downloaded `ggml-tiny.bin`; with random weights what it
says is noise, but every byte of the loading and inference path is the real one.

The mel filters and the vocabulary are the `openai-whisper` package's data files
(`whisper/assets/mel_filters.npz`, `multilingual.tiktoken`). That package's runtime dependencies
(numba, llvmlite, triton: hundreds of MB) buy nothing here, so it is not a dependency: an installed
`whisper` package is used when there is one, else its sdist is fetched from PyPI once with
`pip download --no-deps` and the two files are read out of the archive into the cache.
"""

from __future__ import annotations

import base64
import os
import struct
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

__all__ = [
    "GGML_MAGIC",
    "MODEL_FILE",
    "WHISPER_PRESETS",
    "WhisperPreset",
    "whisper_assets",
    "write_ggml",
    "write_whisper_checkpoint",
]

GGML_MAGIC = 0x67676D6C  # "ggml"
MODEL_FILE = "ggml-model.bin"
OPENAI_WHISPER = "openai-whisper==20250625"
_ASSETS = ("mel_filters.npz", "multilingual.tiktoken")


@dataclass(frozen=True)
class WhisperPreset:
    """The shape of a Whisper model (OpenAI's sizes)."""

    name: str
    d_model: int
    layers: int
    heads: int
    ffn_dim: int
    n_mels: int = 80
    vocab_size: int = 51865  # multilingual: 50257 BPE tokens, then the special and timestamp tokens
    audio_ctx: int = 1500  # 30 s of audio at 50 frames per second after the conv stride
    text_ctx: int = 448

    def config(self) -> dict[str, Any]:
        """transformers' WhisperConfig fields for this shape."""
        return {
            "vocab_size": self.vocab_size,
            "num_mel_bins": self.n_mels,
            "d_model": self.d_model,
            "encoder_layers": self.layers,
            "decoder_layers": self.layers,
            "encoder_attention_heads": self.heads,
            "decoder_attention_heads": self.heads,
            "encoder_ffn_dim": self.ffn_dim,
            "decoder_ffn_dim": self.ffn_dim,
            "max_source_positions": self.audio_ctx,
            "max_target_positions": self.text_ctx,
            "decoder_start_token_id": 50258,
            "bos_token_id": 50257,
            "eos_token_id": 50257,
            "pad_token_id": 50257,
        }


WHISPER_PRESETS: dict[str, WhisperPreset] = {
    "whisper-tiny": WhisperPreset("whisper-tiny", d_model=384, layers=4, heads=6, ffn_dim=1536),
}

# transformers' names -> whisper.cpp's (the converter's conv_map).
_RENAMES = {
    "self_attn.k_proj": "attn.key",
    "self_attn.q_proj": "attn.query",
    "self_attn.v_proj": "attn.value",
    "self_attn.out_proj": "attn.out",
    "self_attn_layer_norm": "attn_ln",
    "encoder_attn.q_proj": "cross_attn.query",
    "encoder_attn.k_proj": "cross_attn.key",
    "encoder_attn.v_proj": "cross_attn.value",
    "encoder_attn.out_proj": "cross_attn.out",
    "encoder_attn_layer_norm": "cross_attn_ln",
    "fc1": "mlp.0",
    "fc2": "mlp.2",
    "final_layer_norm": "mlp_ln",
    "encoder.layer_norm.bias": "encoder.ln_post.bias",
    "encoder.layer_norm.weight": "encoder.ln_post.weight",
    "encoder.embed_positions.weight": "encoder.positional_embedding",
    "decoder.layer_norm.bias": "decoder.ln.bias",
    "decoder.layer_norm.weight": "decoder.ln.weight",
    "decoder.embed_positions.weight": "decoder.positional_embedding",
    "decoder.embed_tokens.weight": "decoder.token_embedding.weight",
}
# Kept in f32 even in an f16 file: whisper.cpp adds them to f32 activations.
_F32_NAMES = {
    "encoder.conv1.bias",
    "encoder.conv2.bias",
    "encoder.positional_embedding",
    "decoder.positional_embedding",
}


def ggml_name(name: str) -> str | None:
    """whisper.cpp's name for a transformers state-dict entry (None: not written)."""
    if name == "proj_out.weight":
        return None  # tied to the token embedding; whisper.cpp reuses that
    parts = name.split(".")[1:]  # drop "model."
    if parts[1] == "layers":
        return ".".join([parts[0], "blocks", parts[2], _RENAMES[".".join(parts[3:-1])], parts[-1]])
    joined = ".".join(parts)
    return _RENAMES.get(joined, joined)


def write_ggml(
    out: BinaryIO,
    preset: WhisperPreset,
    tensors: Iterator[tuple[str, np.ndarray]],
    mel_filters: np.ndarray,
    vocabulary: list[bytes],
) -> None:
    """One ggml model file: header, mel filters, vocabulary, then the tensors (f16 where 2-D)."""
    out.write(
        struct.pack(
            "<12i",
            GGML_MAGIC,
            preset.vocab_size,
            preset.audio_ctx,
            preset.d_model,
            preset.heads,
            preset.layers,
            preset.text_ctx,
            preset.d_model,
            preset.heads,
            preset.layers,
            preset.n_mels,
            1,  # ftype: f16
        )
    )
    filters = np.ascontiguousarray(mel_filters, dtype="<f4")
    out.write(struct.pack("<2i", *filters.shape))
    out.write(filters.tobytes())
    out.write(struct.pack("<i", len(vocabulary)))
    for token in vocabulary:
        out.write(struct.pack("<i", len(token)))
        out.write(token)
    for name, value in tensors:
        data = value.squeeze()
        if name in ("encoder.conv1.bias", "encoder.conv2.bias"):
            data = data.reshape(data.shape[0], 1)
        f32 = data.ndim < 2 or name in _F32_NAMES
        data = np.ascontiguousarray(data, dtype="<f4" if f32 else "<f2")
        encoded = name.encode()
        out.write(struct.pack("<3i", data.ndim, len(encoded), 0 if f32 else 1))
        out.write(struct.pack(f"<{data.ndim}i", *reversed(data.shape)))  # ggml lists the fastest dim first
        out.write(encoded)
        out.write(data.tobytes())


def write_whisper_checkpoint(
    directory: Path, preset_name: str, seed: int, *, cache_dir: str | os.PathLike[str] | None = None
) -> dict[str, Any]:
    """Write `ggml-model.bin` and the transformers `config.json` it was made from into `directory`;
    returns the config."""
    import torch
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    preset = WHISPER_PRESETS[preset_name]
    mel_path, vocab_path = whisper_assets(cache_dir)
    with np.load(mel_path) as mel:
        filters = mel[f"mel_{preset.n_mels}"]
    vocabulary = read_tiktoken(vocab_path)
    torch.manual_seed(seed)
    config = WhisperConfig(**preset.config())
    model = WhisperForConditionalGeneration(config).eval()
    state = model.state_dict()

    def tensors() -> Iterator[tuple[str, np.ndarray]]:
        for name, value in state.items():
            mapped = ggml_name(name)
            if mapped is not None:
                yield mapped, value.detach().float().numpy()

    with (directory / MODEL_FILE).open("wb") as out:
        write_ggml(out, preset, tensors(), filters, vocabulary)
    return config.to_dict()


def read_tiktoken(path: Path) -> list[bytes]:
    """The BPE tokens of a `.tiktoken` file (base64 token, rank per line), in rank order."""
    ranked: dict[int, bytes] = {}
    for line in path.read_bytes().splitlines():
        if line.strip():
            token, rank = line.split()
            ranked[int(rank)] = base64.b64decode(token)
    if sorted(ranked) != list(range(len(ranked))):
        raise ValueError(f"{path}: the ranks are not 0..{len(ranked) - 1}")
    return [ranked[i] for i in range(len(ranked))]


def whisper_assets(cache_dir: str | os.PathLike[str] | None = None) -> tuple[Path, Path]:
    """(mel_filters.npz, multilingual.tiktoken): from an installed `whisper` package, else from the
    cache, filled once from openai-whisper's sdist."""
    from importlib.util import find_spec

    spec = find_spec("whisper")
    for location in (spec.submodule_search_locations or []) if spec else []:
        assets = Path(location) / "assets"
        if all((assets / name).is_file() for name in _ASSETS):
            return assets / _ASSETS[0], assets / _ASSETS[1]
    from engine.tokenizer import default_cache_dir

    cached = (Path(cache_dir) if cache_dir else default_cache_dir()) / "openai-whisper-assets"
    if not all((cached / name).is_file() for name in _ASSETS):
        _fetch_assets(cached)
    return cached / _ASSETS[0], cached / _ASSETS[1]


def _fetch_assets(target: Path) -> None:
    with tempfile.TemporaryDirectory() as download:
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            OPENAI_WHISPER,
            "--no-deps",
            "--no-binary",
            ":all:",
        ]
        done = subprocess.run(
            [*command, "--dest", download], capture_output=True, text=True, timeout=600, check=False
        )
        archives = list(Path(download).glob("openai_whisper-*.tar.gz"))
        if done.returncode != 0 or not archives:
            raise RuntimeError(
                f"could not fetch {OPENAI_WHISPER} for its mel filters and vocabulary: {done.stderr[-1000:]}"
            )
        target.mkdir(parents=True, exist_ok=True)
        with tarfile.open(archives[0]) as archive:
            for member in archive.getmembers():
                name = Path(member.name).name
                if name in _ASSETS and Path(member.name).parent.name == "assets":
                    source = archive.extractfile(member)
                    assert source is not None
                    partial = target / f".{name}.partial"
                    partial.write_bytes(source.read())
                    os.replace(partial, target / name)
    missing = [name for name in _ASSETS if not (target / name).is_file()]
    if missing:
        raise RuntimeError(f"{OPENAI_WHISPER}'s archive lacks {', '.join(missing)}")
