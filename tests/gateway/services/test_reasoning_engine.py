"""Reasoning outputs on a real engine with the `think` parser, through the gateway, read by the
real openai SDK and LangChain. The random-weight model is made to think by
structured outputs: a regex `<think>...</think>answer` that vLLM applies to the whole output (the
`think` parser turns `enable_in_reasoning` on), which the engine's parser then splits."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest
from langchain_openai import ChatOpenAI

from engine.launcher import EngineConfig
from gateway import Settings, create_app
from tests.conftest import ROOT
from tests.servers import ThreadedServer, free_port, logged_engine

pytestmark = pytest.mark.engine

SHAPE = r"<think>[a-z ]{1,40}</think>[a-z ]{1,20}"
THINKING: dict[str, Any] = {"structured_outputs": {"regex": SHAPE}, "seed": 7}
ASK: list[Any] = [{"role": "user", "content": "Think, then answer."}]
WORDS = re.compile(r"[a-z ]+")


@pytest.fixture(scope="module")
def thinking_urls(
    tiny_checkpoint: Any, gateway_settings: Callable[..., Settings], model: str
) -> Iterator[tuple[str, str]]:
    """Its own engine, the tiny checkpoint with `--reasoning-parser think`: on the session's engine
    the parser broke a streamed named tool call (tests/gateway/services/test_stored_completions.py,
    vLLM 0.32), so it is not the session's default until that is understood."""
    config = EngineConfig(
        model_dir=tiny_checkpoint, served_model_name=model, port=free_port(), reasoning_parser="think"
    )
    with (
        logged_engine(config, ROOT / ".cache" / "test-reasoning-engine.log") as engine,
        ThreadedServer(create_app(gateway_settings(engine_url=engine.base_url))) as server,
    ):
        yield server.url, engine.base_url


@pytest.fixture(scope="module")
def thinking_gateway(thinking_urls: tuple[str, str]) -> str:
    return thinking_urls[0]


@pytest.fixture(scope="module")
def thinking_engine_url(thinking_urls: tuple[str, str]) -> str:
    return thinking_urls[1]


@pytest.fixture(scope="module")
def client(thinking_gateway: str, api_key: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=thinking_gateway + "/v1", api_key=api_key, max_retries=0, timeout=120
    ) as made:
        yield made


def _reasoning(message: Any) -> str:
    extra = message.model_extra or {}
    # vLLM 0.32's name and the one DeepSeek-style clients read, both set, equal.
    assert extra.get("reasoning") == extra.get("reasoning_content")
    return str(extra.get("reasoning_content") or "")


def test_json_and_stream_split_the_same_and_count_reasoning_tokens(
    client: openai.OpenAI, thinking_engine_url: str, model: str
) -> None:
    answer = client.chat.completions.create(
        model=model, messages=ASK, max_completion_tokens=120, temperature=0, extra_body=THINKING
    )
    message = answer.choices[0].message
    reasoning, content = _reasoning(message), message.content or ""
    assert WORDS.fullmatch(reasoning) and WORDS.fullmatch(content), (reasoning, content)
    assert "<think>" not in content and "</think>" not in content
    details = answer.usage.completion_tokens_details if answer.usage else None
    assert details is not None and details.reasoning_tokens and details.reasoning_tokens > 0
    assert details.reasoning_tokens < answer.usage.completion_tokens  # type: ignore[union-attr]
    # The engine's own answer: the gateway passed the reasoning through untouched.
    direct = httpx.post(
        thinking_engine_url + "/v1/chat/completions",
        json={"model": model, "messages": ASK, "max_completion_tokens": 120, "temperature": 0, **THINKING},
        timeout=120,
    ).json()
    assert direct["choices"][0]["message"]["reasoning"] == reasoning
    assert "reasoning_content" not in direct["choices"][0]["message"]  # vLLM 0.32 sets only `reasoning`

    stream = client.chat.completions.create(
        model=model,
        messages=ASK,
        max_completion_tokens=120,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
        extra_body=THINKING,
    )
    thought, said, usage = "", "", None
    for chunk in stream:
        usage = chunk.usage or usage
        for choice in chunk.choices:
            thought += _reasoning(choice.delta)
            said += choice.delta.content or ""
    assert (thought, said) == (reasoning, content)
    assert usage is not None and usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == details.reasoning_tokens

    # Without the shape the random model does not think: all content, as before the parser.
    plain = client.chat.completions.create(
        model=model, messages=ASK, max_completion_tokens=4, extra_body={"ignore_eos": True}
    )
    assert not _reasoning(plain.choices[0].message) and plain.choices[0].message.content


def test_langchain_reads_the_answer_and_its_reasoning_tokens(
    thinking_gateway: str, api_key: str, model: str
) -> None:
    llm = ChatOpenAI(
        base_url=thinking_gateway + "/v1",
        api_key=api_key,
        model=model,
        max_completion_tokens=120,
        temperature=0,
        extra_body=THINKING,
    )
    answer = llm.invoke("Think, then answer.")
    # ChatOpenAI keeps only OpenAI's fields: the answer without its reasoning, the reasoning counted.
    assert isinstance(answer.content, str) and WORDS.fullmatch(answer.content)
    assert answer.usage_metadata is not None
    assert answer.usage_metadata.get("output_token_details", {}).get("reasoning", 0) > 0


def test_responses_reasoning_item_comes_before_the_message_and_is_stored(
    client: openai.OpenAI, model: str
) -> None:
    response = client.responses.create(
        model=model, input="Think, then answer.", max_output_tokens=120, temperature=0, extra_body=THINKING
    )
    kinds = [item.type for item in response.output]
    assert kinds == ["reasoning", "message"], kinds
    thought: Any = response.output[0]
    assert thought.content and WORDS.fullmatch(thought.content[0].text)
    assert WORDS.fullmatch(response.output_text)
    stored = client.responses.retrieve(response.id)
    assert [item.type for item in stored.output] == kinds
    events = list(
        client.responses.create(
            model=model,
            input="Think, then answer.",
            max_output_tokens=120,
            temperature=0,
            stream=True,
            extra_body=THINKING,
        )
    )
    deltas = "".join(getattr(e, "delta", "") for e in events if e.type == "response.reasoning_text.delta")
    assert deltas == thought.content[0].text
