"""Reasoning outputs on the session's real engine (the `think` parser, tests/conftest.py), through
the gateway, read by the real openai SDK and LangChain. The random-weight model is made to think by
structured outputs: a regex `<think>...</think>answer` that vLLM applies to the whole output (the
`think` parser turns `enable_in_reasoning` on), which the engine's parser then splits."""

from __future__ import annotations

import re
from typing import Any

import httpx
import openai
import pytest
from langchain_openai import ChatOpenAI

pytestmark = pytest.mark.engine

SHAPE = r"<think>[a-z ]{1,40}</think>[a-z ]{1,20}"
THINKING: dict[str, Any] = {"structured_outputs": {"regex": SHAPE}, "seed": 7}
ASK: list[Any] = [{"role": "user", "content": "Think, then answer."}]
WORDS = re.compile(r"[a-z ]+")


def _reasoning(message: Any) -> str:
    extra = message.model_extra or {}
    # vLLM 0.32's name and the one DeepSeek-style clients read, both set, equal.
    assert extra.get("reasoning") == extra.get("reasoning_content")
    return str(extra.get("reasoning_content") or "")


def test_json_and_stream_split_the_same_and_count_reasoning_tokens(
    openai_client: openai.OpenAI, engine_url: str, model: str
) -> None:
    answer = openai_client.chat.completions.create(
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
        engine_url + "/v1/chat/completions",
        json={"model": model, "messages": ASK, "max_completion_tokens": 120, "temperature": 0, **THINKING},
        timeout=120,
    ).json()
    assert direct["choices"][0]["message"]["reasoning"] == reasoning
    assert "reasoning_content" not in direct["choices"][0]["message"]  # vLLM 0.32 sets only `reasoning`

    stream = openai_client.chat.completions.create(
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
    plain = openai_client.chat.completions.create(
        model=model, messages=ASK, max_completion_tokens=4, extra_body={"ignore_eos": True}
    )
    assert not _reasoning(plain.choices[0].message) and plain.choices[0].message.content


def test_langchain_reads_the_answer_and_its_reasoning_tokens(
    gateway_url: str, api_key: str, model: str
) -> None:
    llm = ChatOpenAI(
        base_url=gateway_url + "/v1",
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
    openai_client: openai.OpenAI, model: str
) -> None:
    response = openai_client.responses.create(
        model=model, input="Think, then answer.", max_output_tokens=120, temperature=0, extra_body=THINKING
    )
    kinds = [item.type for item in response.output]
    assert kinds == ["reasoning", "message"], kinds
    thought: Any = response.output[0]
    assert thought.content and WORDS.fullmatch(thought.content[0].text)
    assert WORDS.fullmatch(response.output_text)
    stored = openai_client.responses.retrieve(response.id)
    assert [item.type for item in stored.output] == kinds
    events = list(
        openai_client.responses.create(
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
