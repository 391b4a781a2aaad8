"""The `think` reasoning parser (engine/reasoning.py) on the tiny checkpoint's real tokenizer, and
the engine options that turn it on. The engine serving it is tested in
tests/gateway/services/test_reasoning_engine.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from engine.__main__ import _engine_config, _parser
from engine.launcher import EngineConfig

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / ".cache" / "checkpoints" / "tiny"


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    transformers = pytest.importorskip("transformers")
    if not (TINY / "tokenizer.json").is_file():
        pytest.skip("the tiny checkpoint is not built")
    return transformers.AutoTokenizer.from_pretrained(TINY)


def _parser_for(tokenizer: Any) -> Any:
    from vllm.reasoning import ReasoningParserManager

    import engine.reasoning  # noqa: F401  (registers the parser, as --reasoning-parser-plugin does)

    return ReasoningParserManager.get_reasoning_parser("think")(tokenizer)


def _streamed(parser: Any, tokenizer: Any, text: str) -> tuple[str, str, int | None]:
    """The reasoning and the content as vLLM streams them, one token's text at a time, and the
    token at which the parser said the reasoning was over (vLLM's tool-call parser takes over)."""
    ids = tokenizer.encode(text)
    reasoning, content, before, ended = "", "", "", None
    for index, token in enumerate(ids):
        now = tokenizer.decode(ids[: index + 1])
        delta = parser.extract_reasoning_streaming(before, now, now[len(before) :], [], [], [token])
        before = now
        if delta is not None:
            reasoning += delta.reasoning or ""
            content += delta.content or ""
        if parser.is_reasoning_end_streaming(ids[: index + 1], [token]):
            ended = index
            # vLLM stops calling the reasoning parser here; the rest is the tool parser's content.
            content += tokenizer.decode(ids[index + 1 :])
            break
    return reasoning, content, ended


@pytest.mark.parametrize(
    ("text", "reasoning", "content"),
    [
        ("<think>abc def</think>the answer", "abc def", "the answer"),
        # No `<think>`: the whole text is the answer (qwen3 and olmo3's stream would call it reasoning).
        ("hello world", "", "hello world"),
    ],
)
def test_split_is_the_same_in_json_and_stream(
    tokenizer: Any, text: str, reasoning: str, content: str
) -> None:
    parser = _parser_for(tokenizer)
    assert parser.extract_reasoning(text, None) == (reasoning or None, content)
    streamed_reasoning, streamed_content, ended = _streamed(_parser_for(tokenizer), tokenizer, text)
    assert (streamed_reasoning, streamed_content) == (reasoning, content)
    # Over by the answer's first token (at `</think>`'s last one, when it thought): the tool-call
    # parser that vLLM hands the stream to then sees the whole answer.
    first = len(tokenizer.encode(text)) - len(tokenizer.encode(content, add_special_tokens=False))
    assert ended is not None and ended <= first


def test_reasoning_tokens_are_the_reasoning_text_tokens(tokenizer: Any) -> None:
    parser = _parser_for(tokenizer)
    ids = tokenizer.encode("<think>abc def ghi</think>the answer")
    expected = len(tokenizer.encode("abc def ghi", add_special_tokens=False))
    assert parser.count_reasoning_tokens(ids) == expected > 0
    assert parser.count_reasoning_tokens(tokenizer.encode("no thinking here")) == 0


def test_command_passes_the_parser_and_its_plugin(tmp_path: Path) -> None:
    argv = EngineConfig(
        model_dir=tmp_path, reasoning_parser="think", structured_outputs_in_reasoning=True
    ).command()
    assert argv[argv.index("--reasoning-parser") + 1] == "think"
    assert argv[argv.index("--reasoning-parser-plugin") + 1] == "engine.reasoning"
    assert argv[argv.index("--structured-outputs-config") + 1] == '{"enable_in_reasoning": true}'
    # `think` always has the grammar cover the reasoning (an answer need not think at all).
    assert (
        "--structured-outputs-config" in EngineConfig(model_dir=tmp_path, reasoning_parser="think").command()
    )
    vllm_own = EngineConfig(model_dir=tmp_path, reasoning_parser="qwen3").command()
    assert "--reasoning-parser-plugin" not in vllm_own and "--structured-outputs-config" not in vllm_own
    assert "--reasoning-parser" not in EngineConfig(model_dir=tmp_path).command()
    # A pooling model generates no text: no parser.
    assert (
        "--reasoning-parser"
        not in EngineConfig(model_dir=tmp_path, runner="pooling", reasoning_parser="think").command()
    )


def test_serve_option(tmp_path: Path) -> None:
    args = _parser().parse_args(["serve", "--model", str(tmp_path), "--reasoning-parser", "think"])
    assert _engine_config(args, tmp_path).reasoning_parser == "think"
    # Compose passes the variable as is: empty means none.
    args = _parser().parse_args(["serve", "--model", str(tmp_path), "--reasoning-parser", ""])
    assert _engine_config(args, tmp_path).reasoning_parser is None
