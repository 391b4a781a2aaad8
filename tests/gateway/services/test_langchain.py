"""LangChain's ChatOpenAI against the gateway: invoke, stream, batch and streamed usage."""

from __future__ import annotations

import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, SystemMessage
from langchain_openai import ChatOpenAI

pytestmark = pytest.mark.engine


def chat_model(gateway_url: str, api_key: str, model: str, **kwargs: object) -> ChatOpenAI:
    return ChatOpenAI(
        base_url=gateway_url + "/v1",
        api_key=api_key,
        model=model,
        max_completion_tokens=6,
        temperature=0,
        extra_body={"ignore_eos": True},
        **kwargs,
    )


def test_invoke(gateway_url: str, api_key: str, model: str) -> None:
    answer = chat_model(gateway_url, api_key, model).invoke(
        [SystemMessage("You are terse."), HumanMessage("Name a colour.")]
    )
    assert isinstance(answer, AIMessage)
    assert isinstance(answer.content, str)
    assert answer.usage_metadata is not None
    assert answer.usage_metadata["output_tokens"] == 6
    assert answer.response_metadata["finish_reason"] == "length"


def test_stream(gateway_url: str, api_key: str, model: str) -> None:
    llm = chat_model(gateway_url, api_key, model)
    chunks = list(llm.stream("Tell me a story."))
    assert all(isinstance(c, AIMessageChunk) for c in chunks)
    streamed = "".join(str(c.content) for c in chunks)
    assert streamed == llm.invoke("Tell me a story.").content


def test_stream_usage(gateway_url: str, api_key: str, model: str) -> None:
    llm = chat_model(gateway_url, api_key, model, stream_usage=True)
    total: AIMessageChunk | None = None
    for chunk in llm.stream("Hi"):
        total = chunk if total is None else total + chunk
    assert total is not None and total.usage_metadata is not None
    assert total.usage_metadata["output_tokens"] == 6
    assert total.usage_metadata["input_tokens"] > 0


def test_batch(gateway_url: str, api_key: str, model: str) -> None:
    answers = chat_model(gateway_url, api_key, model).batch(["one", "two", "three"])
    assert len(answers) == 3
    assert all(a.usage_metadata and a.usage_metadata["output_tokens"] == 6 for a in answers)


async def test_async_invoke_and_stream(gateway_url: str, api_key: str, model: str) -> None:
    llm = chat_model(gateway_url, api_key, model)
    answer = await llm.ainvoke("Hello")
    assert answer.usage_metadata is not None
    chunks = [c async for c in llm.astream("Hello")]
    assert "".join(str(c.content) for c in chunks) == answer.content
