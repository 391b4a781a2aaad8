"""Random-weight Whisper checkpoints in the Hugging Face layout, for vLLM's speech-to-text server.

`python -m engine build-checkpoint --preset whisper-hf-tiny` saves a `WhisperForConditionalGeneration`
of the preset's shape with `save_pretrained`, its tokenizer and its feature extractor, all built
offline: the tokenizer is openai-whisper's `multilingual.tiktoken` (the vocabulary whisper.cpp's
file is written from, `engine/whisper.py`) converted to a byte-level BPE `tokenizer.json` by
transformers' `TikTokenConverter`, then Whisper's special tokens in their published order (ids
50257-51864). vLLM then serves it at `/v1/audio/transcriptions` like `openai/whisper-tiny`; with
random weights what it says is noise.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from engine.whisper import WHISPER_PRESETS, whisper_assets

__all__ = ["WHISPER_HF_PRESETS", "whisper_special_tokens", "write_whisper_hf_checkpoint"]

# The Hugging Face preset's name -> the Whisper shape it has (engine/whisper.py's presets).
WHISPER_HF_PRESETS = {"whisper-hf-tiny": "whisper-tiny"}

_TIMESTAMPS = 1501  # <|0.00|> ... <|30.00|>


def whisper_special_tokens() -> list[str]:
    """Whisper's special tokens after the 50257 BPE tokens, in id order (multilingual vocabulary)."""
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    # The first 99: large-v3's 100th (Cantonese) is not in the tiny/base/small/medium vocabulary.
    languages = [f"<|{code}|>" for code in list(LANGUAGES)[:99]]
    tasks = ["<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>", "<|nocaptions|>"]
    stamps = [f"<|{i * 0.02:.2f}|>" for i in range(_TIMESTAMPS)]
    return ["<|endoftext|>", "<|startoftranscript|>", *languages, *tasks, "<|notimestamps|>", *stamps]


def write_whisper_hf_checkpoint(
    directory: Path, preset_name: str, seed: int, *, cache_dir: str | os.PathLike[str] | None = None
) -> dict[str, Any]:
    """Model, tokenizer, feature extractor and generation config into `directory`; returns the config."""
    import torch
    from transformers import (
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
    )
    from transformers.convert_slow_tokenizer import TikTokenConverter
    from transformers.models.whisper.tokenization_whisper import WhisperTokenizer

    preset = WHISPER_PRESETS[preset_name]
    _, vocab_path = whisper_assets(cache_dir)
    specials = whisper_special_tokens()
    backend = TikTokenConverter(vocab_file=str(vocab_path), extra_special_tokens=specials).converted()
    if backend.get_vocab_size() != preset.vocab_size:
        raise ValueError(
            f"the Whisper vocabulary has {backend.get_vocab_size()} tokens, not {preset.vocab_size}"
        )
    tokenizer = WhisperTokenizer(
        tokenizer_object=backend,
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        unk_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        model_max_length=preset.text_ctx,
    )
    torch.manual_seed(seed)
    config = WhisperConfig(**preset.config())
    model = WhisperForConditionalGeneration(config).eval()
    model.generation_config.update(
        lang_to_id={token: backend.token_to_id(token) for token in specials[2:101]},
        task_to_id={"translate": 50358, "transcribe": 50359},
        is_multilingual=True,
        no_timestamps_token_id=50363,
        decoder_start_token_id=50258,
    )
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    WhisperFeatureExtractor(feature_size=preset.n_mels).save_pretrained(directory)
    return config.to_dict()
