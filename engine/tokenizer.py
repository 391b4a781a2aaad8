"""Qwen2.5's tokenizer, rebuilt offline.

No weights or tokenizer files can be downloaded here, but dashscope ships the
151,643 BPE ranks Qwen uses (`qwen.tiktoken`). Converting them with
transformers' `TikTokenConverter` and adding Qwen2.5's 22 special tokens and
chat template gives a tokenizer that encodes exactly as the published
Qwen2.5-Instruct one does, so test checkpoints speak the real vocabulary.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

__all__ = [
    "CHAT_TEMPLATE_RESOURCE",
    "DEFAULT_MODEL_MAX_LENGTH",
    "EOS_TOKEN",
    "PAD_TOKEN",
    "QWEN2_PATTERN",
    "SPECIAL_TOKENS",
    "VL_CHAT_TEMPLATE_RESOURCE",
    "build_tokenizer",
    "chat_template",
    "default_cache_dir",
    "save_tokenizer",
    "tiktoken_path",
]

QWEN2_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
"""Qwen2's pre-tokenizer split: unlike cl100k it keeps digits one per piece."""

FIRST_SPECIAL_ID = 151643


@dataclass(frozen=True)
class SpecialToken:
    """An added token; `special` decides whether `skip_special_tokens` drops it."""

    content: str
    special: bool


# In id order from 151643. The tool-call, FIM and repo tokens are not
# "special" in the published tokenizer: decoding must keep `<tool_call>` so
# that tool-call parsers can see it.
SPECIAL_TOKENS: tuple[SpecialToken, ...] = (
    SpecialToken("<|endoftext|>", True),
    SpecialToken("<|im_start|>", True),
    SpecialToken("<|im_end|>", True),
    SpecialToken("<|object_ref_start|>", True),
    SpecialToken("<|object_ref_end|>", True),
    SpecialToken("<|box_start|>", True),
    SpecialToken("<|box_end|>", True),
    SpecialToken("<|quad_start|>", True),
    SpecialToken("<|quad_end|>", True),
    SpecialToken("<|vision_start|>", True),
    SpecialToken("<|vision_end|>", True),
    SpecialToken("<|vision_pad|>", True),
    SpecialToken("<|image_pad|>", True),
    SpecialToken("<|video_pad|>", True),
    SpecialToken("<tool_call>", False),
    SpecialToken("</tool_call>", False),
    SpecialToken("<|fim_prefix|>", False),
    SpecialToken("<|fim_middle|>", False),
    SpecialToken("<|fim_suffix|>", False),
    SpecialToken("<|fim_pad|>", False),
    SpecialToken("<|repo_name|>", False),
    SpecialToken("<|file_sep|>", False),
)

EOS_TOKEN = "<|im_end|>"
"""The instruct models end a turn with `<|im_end|>`, not `<|endoftext|>`."""
PAD_TOKEN = "<|endoftext|>"
DEFAULT_MODEL_MAX_LENGTH = 131072
CHAT_TEMPLATE_RESOURCE = "templates/qwen2_5_chat.jinja"
VL_CHAT_TEMPLATE_RESOURCE = "templates/qwen2_5_vl_chat.jinja"
"""The same, for content sent as a list of parts: each image becomes `<image>` where it was sent."""

# Bump when the way the backend tokenizer is built changes, so stale caches
# are ignored rather than trusted.
_CACHE_FORMAT = 1


def tiktoken_path() -> Path:
    """Locate dashscope's `qwen.tiktoken` without importing dashscope itself.

    Importing dashscope pulls in its HTTP client; we only need one data file.
    """
    from importlib.util import find_spec

    spec = find_spec("dashscope")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "dashscope is not installed; it ships qwen.tiktoken (pip install dashscope==2.0.2)"
        )
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "resources" / "qwen.tiktoken"
        if candidate.is_file():
            return candidate
    raise FileNotFoundError("dashscope is installed but has no resources/qwen.tiktoken")


def chat_template(resource: str = CHAT_TEMPLATE_RESOURCE) -> str:
    """Qwen2.5-Instruct's ChatML template, with tools and tool calls (or another packaged one)."""
    return resources.files("engine").joinpath(resource).read_text(encoding="utf-8")


def default_cache_dir() -> Path:
    """Where built artifacts are cached unless a caller passes a directory."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tantra"


def build_tokenizer(
    *,
    model_max_length: int = DEFAULT_MODEL_MAX_LENGTH,
    cache_dir: str | os.PathLike[str] | None = None,
) -> PreTrainedTokenizerFast:
    """Build Qwen2.5-Instruct's tokenizer from dashscope's BPE ranks.

    The backend (`tokenizer.json`) is cached under `cache_dir` (default
    `~/.cache/tantra`), keyed by the rank file and the build recipe, because
    converting the ranks into BPE merges takes a few seconds.
    """
    from transformers import PreTrainedTokenizerFast

    backend = _load_or_build_backend(Path(cache_dir) if cache_dir else default_cache_dir())
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        bos_token=None,
        unk_token=None,
        additional_special_tokens=_additional_special_tokens(),
        model_max_length=model_max_length,
        chat_template=chat_template(),
        clean_up_tokenization_spaces=False,
        split_special_tokens=False,
    )


def save_tokenizer(
    out_dir: str | os.PathLike[str],
    *,
    model_max_length: int = DEFAULT_MODEL_MAX_LENGTH,
    cache_dir: str | os.PathLike[str] | None = None,
    extra_special_tokens: Sequence[str] = (),
    chat_template_resource: str = CHAT_TEMPLATE_RESOURCE,
) -> Path:
    """Write the tokenizer files a Qwen2.5 checkpoint ships.

    Files are written by hand rather than with `save_pretrained`, whose layout
    changes between transformers versions (v5 moves the chat template out of
    `tokenizer_config.json`); this keeps the published layout, which both
    `AutoTokenizer.from_pretrained` and vLLM read.

    `extra_special_tokens` are added after Qwen2.5's own, from id 151665 on, as
    models built on Qwen2.5 add theirs (a vision model's `<image>`); they fit in the
    embedding's padding rows. `chat_template_resource` names the packaged
    template to ship (a vision model's places its image tokens).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    backend = _load_or_build_backend(Path(cache_dir) if cache_dir else default_cache_dir())
    extras = tuple(SpecialToken(content, True) for content in extra_special_tokens)
    _add_special_tokens(backend, extras, first_id=FIRST_SPECIAL_ID + len(SPECIAL_TOKENS))
    backend.save(str(out / "tokenizer.json"))

    vocab, merges = _vocab_and_merges(backend)
    _write_json(out / "vocab.json", vocab, indent=None)
    (out / "merges.txt").write_text(
        "#version: 0.2\n" + "".join(f"{left} {right}\n" for left, right in merges), encoding="utf-8"
    )
    template = chat_template(chat_template_resource)
    _write_json(out / "tokenizer_config.json", _tokenizer_config(model_max_length, extras, template))
    _write_json(out / "special_tokens_map.json", _special_tokens_map(extras))
    return out


def _tokenizer_config(
    model_max_length: int, extras: Sequence[SpecialToken] = (), template: str | None = None
) -> dict[str, Any]:
    """The published Qwen2.5-Instruct `tokenizer_config.json`, field for field (plus `extras`)."""
    return {
        "add_bos_token": False,
        "add_prefix_space": False,
        "added_tokens_decoder": {
            str(FIRST_SPECIAL_ID + i): {
                "content": token.content,
                "lstrip": False,
                "normalized": False,
                "rstrip": False,
                "single_word": False,
                "special": token.special,
            }
            for i, token in enumerate((*SPECIAL_TOKENS, *extras))
        },
        "additional_special_tokens": _additional_special_tokens(extras),
        "bos_token": None,
        "chat_template": template or chat_template(),
        "clean_up_tokenization_spaces": False,
        "eos_token": EOS_TOKEN,
        "errors": "replace",
        "model_max_length": model_max_length,
        "pad_token": PAD_TOKEN,
        "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer",
        "unk_token": None,
    }


def _special_tokens_map(extras: Sequence[SpecialToken] = ()) -> dict[str, Any]:
    def entry(content: str) -> dict[str, Any]:
        return {
            "content": content,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
        }

    return {
        "additional_special_tokens": _additional_special_tokens(extras),
        "eos_token": entry(EOS_TOKEN),
        "pad_token": entry(PAD_TOKEN),
    }


def _additional_special_tokens(extras: Sequence[SpecialToken] = ()) -> list[str]:
    """The published list: every `special` added token except the pad/`<|endoftext|>`."""
    return [t.content for t in (*SPECIAL_TOKENS, *extras) if t.special and t.content != PAD_TOKEN]


def _load_or_build_backend(cache_dir: Path) -> Tokenizer:
    from tokenizers import Tokenizer

    rank_file = tiktoken_path()
    cached = cache_dir / "tokenizers" / _cache_key(rank_file) / "tokenizer.json"
    if cached.is_file():
        # A corrupt or foreign cache entry is rebuilt, never fatal.
        with contextlib.suppress(Exception):
            return Tokenizer.from_file(str(cached))
    backend = _build_backend(rank_file)
    # A read-only cache only costs the rebuild next time.
    with contextlib.suppress(OSError):
        _atomic_write_text(cached, backend.to_str())
    return backend


def _cache_key(rank_file: Path) -> str:
    digest = hashlib.sha256()
    digest.update(rank_file.read_bytes())
    recipe = {
        "format": _CACHE_FORMAT,
        "pattern": QWEN2_PATTERN,
        "special": [(t.content, t.special) for t in SPECIAL_TOKENS],
    }
    digest.update(json.dumps(recipe, sort_keys=True).encode())
    return digest.hexdigest()[:16]


def _build_backend(rank_file: Path) -> Tokenizer:
    """Mirror the published Qwen2.5 `tokenizer.json` pipeline.

    NFC normalization, Qwen2's split pattern, byte-level BPE; the added tokens
    are appended in id order so they land on 151643..151664.
    """
    from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import BPE
    from transformers.convert_slow_tokenizer import TikTokenConverter

    converter = TikTokenConverter(vocab_file=str(rank_file), pattern=QWEN2_PATTERN)
    vocab, merges = converter.extract_vocab_merges_from_model(str(rank_file))
    if len(vocab) != FIRST_SPECIAL_ID:
        raise ValueError(f"{rank_file} has {len(vocab)} ranks, expected {FIRST_SPECIAL_ID}")

    backend = Tokenizer(
        BPE(
            vocab=vocab,
            merges=merges,
            dropout=None,
            unk_token=None,
            continuing_subword_prefix="",
            end_of_word_suffix="",
            fuse_unk=False,
            byte_fallback=False,
        )
    )
    backend.normalizer = normalizers.NFC()
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
        ]
    )
    backend.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    # The decoder only maps bytes back; its flags do not change decoding.
    backend.decoder = decoders.ByteLevel()
    _add_special_tokens(backend, SPECIAL_TOKENS, first_id=FIRST_SPECIAL_ID)
    return backend


def _add_special_tokens(backend: Tokenizer, tokens: Sequence[SpecialToken], *, first_id: int) -> None:
    """Append added tokens in order; each must land on the id after the previous one."""
    from tokenizers import AddedToken

    for token in tokens:
        added = AddedToken(
            token.content,
            single_word=False,
            lstrip=False,
            rstrip=False,
            normalized=False,
            special=token.special,
        )
        # add_special_tokens marks the token special for skip_special_tokens;
        # add_tokens keeps tool/FIM tokens visible when decoding.
        if token.special:
            backend.add_special_tokens([added])
        else:
            backend.add_tokens([added])
    for i, token in enumerate(tokens):
        if backend.token_to_id(token.content) != first_id + i:
            raise ValueError(f"{token.content} did not land on id {first_id + i}")


def _vocab_and_merges(backend: Tokenizer) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Read the BPE vocab and merges back out of the serialized backend."""
    model = json.loads(backend.to_str())["model"]
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    return dict(model["vocab"]), [(m[0], m[1]) for m in merges]


def _write_json(path: Path, payload: Any, *, indent: int | None = 2) -> None:
    path.write_text(json.dumps(payload, indent=indent, ensure_ascii=False) + "\n", encoding="utf-8")


def _atomic_write_text(path: Path, text: str) -> None:
    """Write then rename, so a concurrent reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
