"""The rebuilt tokenizer must encode, decode and template exactly as Qwen2.5-Instruct's."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from engine.tokenizer import SPECIAL_TOKENS, build_tokenizer, save_tokenizer

DEFAULT_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."

WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "城市 / city"}},
            "required": ["city"],
        },
    },
}

SAMPLES = [
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog. It's 12,345.67 USD!",
    "你好，世界！今天天气怎么样？",  # noqa: RUF001 - full-width punctuation on purpose
    "日本語のテキストとカタカナ、ひらがな。",
    "مرحبا بالعالم، كيف حالك؟",
    "Emoji: 🎉👍🏽👨‍👩‍👧‍👦 and flags 🇫🇷",
    "def f(x):\n\tif x:\n\t\treturn x  # tab\n\n    return None\r\n",
    "  leading and trailing spaces  \n\n\n",
    "<|im_start|>user\nhi<|im_end|>",
]


@pytest.fixture(scope="module")
def tok(tokenizer_cache: Path) -> PreTrainedTokenizerFast:
    return build_tokenizer(cache_dir=tokenizer_cache)


@pytest.fixture(scope="module")
def saved(tokenizer_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tokenizer(tmp_path_factory.mktemp("tok"), model_max_length=4096, cache_dir=tokenizer_cache)


def test_known_ids(tok: PreTrainedTokenizerFast) -> None:
    assert tok.encode("Hello, world!") == [9707, 11, 1879, 0]
    assert tok.convert_tokens_to_ids("<|endoftext|>") == 151643
    assert tok.convert_tokens_to_ids("<|im_start|>") == 151644
    assert tok.convert_tokens_to_ids("<|im_end|>") == 151645
    assert len(tok) == 151665


def test_eos_pad_and_length(tok: PreTrainedTokenizerFast, tokenizer_cache: Path) -> None:
    assert tok.eos_token == "<|im_end|>"
    assert tok.eos_token_id == 151645
    assert tok.pad_token == "<|endoftext|>"
    assert tok.pad_token_id == 151643
    assert tok.bos_token is None
    assert tok.model_max_length == 131072
    assert build_tokenizer(model_max_length=4096, cache_dir=tokenizer_cache).model_max_length == 4096


@pytest.mark.parametrize("text", SAMPLES)
def test_round_trip(tok: PreTrainedTokenizerFast, text: str) -> None:
    ids = tok.encode(text)
    assert tok.decode(ids) == text


def test_no_unknown_bytes(tok: PreTrainedTokenizerFast) -> None:
    """Byte-level BPE: any byte sequence encodes, so nothing decodes to U+FFFD."""
    text = "".join(chr(c) for c in (0x1F600, 0x0301, 0x200D, 0x7, 0xE000))
    assert tok.decode(tok.encode(text)) == text


@pytest.mark.parametrize("index", range(len(SPECIAL_TOKENS)))
def test_special_tokens_are_single_ids(tok: PreTrainedTokenizerFast, index: int) -> None:
    token = SPECIAL_TOKENS[index]
    assert tok.encode(token.content) == [151643 + index]
    assert tok.encode(f"a{token.content}b") == [tok.encode("a")[0], 151643 + index, tok.encode("b")[0]]


def test_skip_special_tokens_keeps_tool_call_markers(tok: PreTrainedTokenizerFast) -> None:
    """Tool-call parsers read `<tool_call>` from the decoded text, as with the published tokenizer."""
    ids = tok.encode('<|im_start|><tool_call>{"a": 1}</tool_call><|im_end|><|endoftext|>')
    assert tok.decode(ids, skip_special_tokens=True) == '<tool_call>{"a": 1}</tool_call>'


def test_chat_template_system_user_assistant(tok: PreTrainedTokenizerFast) -> None:
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Bye"},
    ]
    rendered = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert rendered == (
        "<|im_start|>system\nYou are terse.<|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\nHello.<|im_end|>\n"
        "<|im_start|>user\nBye<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_chat_template_default_system_prompt(tok: PreTrainedTokenizerFast) -> None:
    rendered = tok.apply_chat_template(
        [{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=False
    )
    assert rendered == f"<|im_start|>system\n{DEFAULT_SYSTEM}<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"


def test_chat_template_tools(tok: PreTrainedTokenizerFast) -> None:
    rendered = tok.apply_chat_template(
        [{"role": "user", "content": "Weather in Paris?"}],
        tools=[WEATHER_TOOL],
        tokenize=False,
        add_generation_prompt=True,
    )
    assert rendered == (
        f"<|im_start|>system\n{DEFAULT_SYSTEM}\n\n# Tools\n\n"
        "You may call one or more functions to assist with the user query.\n\n"
        "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n"
        + json.dumps(WEATHER_TOOL, ensure_ascii=False)
        + "\n</tools>\n\n"
        "For each function call, return a json object with function name and arguments within "
        "<tool_call></tool_call> XML tags:\n<tool_call>\n"
        '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call><|im_end|>\n'
        "<|im_start|>user\nWeather in Paris?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_chat_template_tools_keep_given_system_prompt(tok: PreTrainedTokenizerFast) -> None:
    rendered = tok.apply_chat_template(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        tools=[WEATHER_TOOL],
        tokenize=False,
    )
    assert isinstance(rendered, str)  # tokenize=False renders text
    assert rendered.startswith("<|im_start|>system\nBe brief.\n\n# Tools\n\n")
    assert DEFAULT_SYSTEM not in rendered
    assert rendered.endswith("<|im_start|>user\nHi<|im_end|>\n")


def test_chat_template_tool_calls_and_responses(tok: PreTrainedTokenizerFast) -> None:
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": "Weather in Paris and Oslo?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
                {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}},
            ],
        },
        {"role": "tool", "content": '{"temp_c": 21}'},
        {"role": "tool", "content": '{"temp_c": 9}'},
        {"role": "assistant", "content": "Paris 21°C, Oslo 9°C."},
    ]
    rendered = tok.apply_chat_template(messages, tokenize=False)
    assert rendered == (
        f"<|im_start|>system\n{DEFAULT_SYSTEM}<|im_end|>\n"
        "<|im_start|>user\nWeather in Paris and Oslo?<|im_end|>\n"
        "<|im_start|>assistant\n"
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n'
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call><|im_end|>\n'
        '<|im_start|>user\n<tool_response>\n{"temp_c": 21}\n</tool_response>\n'
        '<tool_response>\n{"temp_c": 9}\n</tool_response><|im_end|>\n'
        "<|im_start|>assistant\nParis 21°C, Oslo 9°C.<|im_end|>\n"
    )


def test_saved_files(saved: Path) -> None:
    names = {p.name for p in saved.iterdir()}
    assert {
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "vocab.json",
        "merges.txt",
    } <= names
    config = json.loads((saved / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "Qwen2Tokenizer"
    assert config["eos_token"] == "<|im_end|>"
    assert config["pad_token"] == "<|endoftext|>"
    assert config["model_max_length"] == 4096
    assert "<tool_call>" in config["chat_template"]
    assert config["added_tokens_decoder"]["151657"] == {
        "content": "<tool_call>",
        "lstrip": False,
        "normalized": False,
        "rstrip": False,
        "single_word": False,
        "special": False,
    }
    assert len(json.loads((saved / "vocab.json").read_text())) == 151643


def test_auto_tokenizer_loads_saved_files_like_the_built_one(
    saved: Path, tok: PreTrainedTokenizerFast
) -> None:
    loaded = AutoTokenizer.from_pretrained(str(saved))
    assert len(loaded) == len(tok)
    assert loaded.eos_token == "<|im_end|>"
    assert loaded.pad_token == "<|endoftext|>"
    assert loaded.model_max_length == 4096
    for text in SAMPLES:
        assert loaded.encode(text) == tok.encode(text), text
    messages = [{"role": "user", "content": "Hi"}]
    assert loaded.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True
    ) == tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def test_vocab_and_merges_files_alone_give_the_same_tokenizer(
    saved: Path, tok: PreTrainedTokenizerFast, tmp_path: Path
) -> None:
    """vocab.json + merges.txt are a complete fallback for tools that do not read tokenizer.json."""
    for name in ("vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"):
        (tmp_path / name).write_bytes((saved / name).read_bytes())
    loaded = AutoTokenizer.from_pretrained(str(tmp_path))
    for text in SAMPLES:
        assert loaded.encode(text) == tok.encode(text), text


def test_cache_is_reused(tokenizer_cache: Path) -> None:
    cached = list(tokenizer_cache.glob("tokenizers/*/tokenizer.json"))
    assert len(cached) == 1
    before = cached[0].stat().st_mtime_ns
    build_tokenizer(cache_dir=tokenizer_cache)
    assert cached[0].stat().st_mtime_ns == before


def test_corrupt_cache_is_rebuilt(tmp_path: Path) -> None:
    build_tokenizer(cache_dir=tmp_path)
    (cached,) = tmp_path.glob("tokenizers/*/tokenizer.json")
    cached.write_text("{not json")
    assert build_tokenizer(cache_dir=tmp_path).encode("Hello, world!") == [9707, 11, 1879, 0]
    assert json.loads(cached.read_text())["model"]["type"] == "BPE"
