"""The real `openai` SDK, sync and async, against the gateway in front of a real vLLM engine."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam
from transformers import AutoTokenizer, PreTrainedTokenizerBase

pytestmark = pytest.mark.engine

HELLO: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Say hello."}]
# The tiny model's weights are random: `ignore_eos` (a vLLM extra the gateway passes through)
# makes token counts exact regardless of what it happens to generate.
EXACT = {"ignore_eos": True}


def test_chat_completion(openai_client: openai.OpenAI, model: str) -> None:
    answer = openai_client.chat.completions.create(
        model=model, messages=HELLO, max_completion_tokens=6, temperature=0, extra_body=EXACT
    )
    assert answer.object == "chat.completion"
    assert answer.id
    assert answer.model == model
    [choice] = answer.choices
    assert choice.index == 0
    assert choice.message.role == "assistant"
    assert isinstance(choice.message.content, str)
    assert choice.finish_reason == "length"
    assert answer.usage is not None
    assert answer.usage.completion_tokens == 6
    assert answer.usage.prompt_tokens > 0
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + 6


def test_max_tokens_legacy_name(openai_client: openai.OpenAI, model: str) -> None:
    answer = openai_client.chat.completions.create(
        model=model, messages=HELLO, max_tokens=3, extra_body=EXACT
    )
    assert answer.usage is not None and answer.usage.completion_tokens == 3


async def test_async_concurrent_chats(async_openai_client: openai.AsyncOpenAI, model: str) -> None:
    answers = await asyncio.gather(
        *(
            async_openai_client.chat.completions.create(
                model=model,
                messages=[{"role": "user", "content": f"Count to {i}."}],
                max_completion_tokens=4,
                extra_body=EXACT,
            )
            for i in range(6)
        )
    )
    assert len({a.id for a in answers}) == 6
    assert all(a.usage is not None and a.usage.completion_tokens == 4 for a in answers)


def test_streaming_chat(openai_client: openai.OpenAI, model: str) -> None:
    stream = openai_client.chat.completions.create(
        model=model, messages=HELLO, max_completion_tokens=8, temperature=0, stream=True, extra_body=EXACT
    )
    chunks = list(stream)
    assert chunks, "no chunks"
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason == "length"
    assert all(c.usage is None for c in chunks)
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks)
    whole = openai_client.chat.completions.create(
        model=model, messages=HELLO, max_completion_tokens=8, temperature=0, extra_body=EXACT
    )
    assert streamed == whole.choices[0].message.content


async def test_async_streaming_with_usage(async_openai_client: openai.AsyncOpenAI, model: str) -> None:
    stream = await async_openai_client.chat.completions.create(
        model=model,
        messages=HELLO,
        max_completion_tokens=5,
        stream=True,
        stream_options={"include_usage": True},
        extra_body=EXACT,
    )
    chunks = [chunk async for chunk in stream]
    *body, last = chunks
    assert last.choices == []
    assert last.usage is not None
    assert last.usage.completion_tokens == 5
    assert last.usage.total_tokens == last.usage.prompt_tokens + 5
    assert all(c.usage is None for c in body)


def test_n_choices(openai_client: openai.OpenAI, model: str) -> None:
    answer = openai_client.chat.completions.create(
        model=model, messages=HELLO, n=3, temperature=1.0, max_completion_tokens=4, extra_body=EXACT
    )
    assert sorted(c.index for c in answer.choices) == [0, 1, 2]
    assert answer.usage is not None and answer.usage.completion_tokens == 12


def test_n_choices_streamed(openai_client: openai.OpenAI, model: str) -> None:
    stream = openai_client.chat.completions.create(
        model=model, messages=HELLO, n=2, max_completion_tokens=4, stream=True, extra_body=EXACT
    )
    finished = {c.choices[0].index for c in stream if c.choices and c.choices[0].finish_reason}
    assert finished == {0, 1}


def test_stop_sequence(openai_client: openai.OpenAI, model: str) -> None:
    """Greedy decoding is deterministic, so a piece of the free answer must end the stopped one."""
    free = openai_client.chat.completions.create(
        model=model, messages=HELLO, max_completion_tokens=24, temperature=0, extra_body=EXACT
    )
    text = free.choices[0].message.content or ""
    stop = next(text[i : i + 2] for i in range(4, len(text) - 2) if text[i : i + 2].strip())
    stopped = openai_client.chat.completions.create(
        model=model, messages=HELLO, max_completion_tokens=24, temperature=0, stop=[stop, "\x00never"]
    )
    assert stopped.choices[0].finish_reason == "stop"
    assert stopped.choices[0].message.content == text[: text.index(stop)]


def test_seed_makes_sampling_repeatable(openai_client: openai.OpenAI, model: str) -> None:
    def sample() -> str | None:
        answer = openai_client.chat.completions.create(
            model=model, messages=HELLO, temperature=1.0, seed=1234, max_completion_tokens=8, extra_body=EXACT
        )
        return answer.choices[0].message.content

    assert sample() == sample()


def test_logprobs(openai_client: openai.OpenAI, model: str) -> None:
    answer = openai_client.chat.completions.create(
        model=model, messages=HELLO, max_completion_tokens=3, logprobs=True, top_logprobs=2, extra_body=EXACT
    )
    content = answer.choices[0].logprobs.content  # type: ignore[union-attr]
    assert content is not None and len(content) == 3
    assert all(len(item.top_logprobs) == 2 for item in content)


def test_completions(openai_client: openai.OpenAI, model: str) -> None:
    answer = openai_client.completions.create(
        model=model, prompt="Once upon a time", max_tokens=5, extra_body=EXACT
    )
    assert answer.object == "text_completion"
    assert answer.usage is not None and answer.usage.completion_tokens == 5
    stream = openai_client.completions.create(
        model=model,
        prompt=["a", "b"],
        max_tokens=3,
        stream=True,
        stream_options={"include_usage": True},
        extra_body=EXACT,
    )
    chunks = list(stream)
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 6
    assert {c.choices[0].index for c in chunks if c.choices} == {0, 1}


def test_models(openai_client: openai.OpenAI, model: str) -> None:
    listed = openai_client.models.list()
    # The engine's model, then the gateway's own: transcription, speech and moderation.
    own = ["whisper-1", "tantra-tts", "omni-moderation-latest", "text-moderation-latest"]
    assert [m.id for m in listed.data] == [model, *own]
    assert listed.data[0].object == "model"
    assert openai_client.models.retrieve(model).id == model
    with pytest.raises(openai.NotFoundError) as caught:
        openai_client.models.retrieve("no-such-model")
    assert caught.value.code == "model_not_found"


def test_request_id_is_echoed_or_made(
    openai_client: openai.OpenAI, model: str, gateway_url: str, auth: dict[str, str]
) -> None:
    raw = openai_client.chat.completions.with_raw_response.create(
        model=model, messages=HELLO, max_completion_tokens=1, extra_headers={"x-request-id": "trace-me-42"}
    )
    assert raw.headers["x-request-id"] == "trace-me-42"
    for path in ("/healthz", "/v1/models", "/nowhere"):
        made = httpx.get(gateway_url + path, headers=auth).headers.get("x-request-id")
        assert made and len(made) == 32
    streamed = httpx.post(
        gateway_url + "/v1/chat/completions",
        json={"model": model, "messages": HELLO, "max_tokens": 2, "stream": True},
        headers={"x-request-id": "stream-id-1", **auth},
    )
    assert streamed.headers["x-request-id"] == "stream-id-1"
    assert streamed.headers["content-type"].startswith("text/event-stream")
    assert streamed.text.endswith("data: [DONE]\n\n")


def test_tools_are_accepted(openai_client: openai.OpenAI, model: str) -> None:
    """A random model will not call tools well, but the request and its template must go through."""
    answer = openai_client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        tools=[
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "Weather for a city",
                    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
                },
            }
        ],
        tool_choice="none",
        max_completion_tokens=4,
    )
    assert answer.choices[0].message.role == "assistant"


def decoded(tokenizer: PreTrainedTokenizerBase, token_id: int) -> str:
    text = tokenizer.decode([token_id])
    assert isinstance(text, str)  # one sequence of ids decodes to one string
    return text


def test_json_schema_response_format(openai_client: openai.OpenAI, model: str, tiny_checkpoint: Path) -> None:
    """Structured output: the engine's guided decoding makes even a random model emit valid JSON."""
    # Random weights favour whitespace, which JSON allows without end; `logit_bias` forbids it.
    tokenizer = AutoTokenizer.from_pretrained(tiny_checkpoint)
    blank = [i for i in range(len(tokenizer)) if not decoded(tokenizer, i).strip()]
    answer = openai_client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Give a colour."}],
        response_format={
            "type": "json_schema",
            "json_schema": {
                "name": "colour",
                "schema": {
                    "type": "object",
                    "properties": {"name": {"type": "string", "enum": ["red", "green"]}},
                    "required": ["name"],
                    "additionalProperties": False,
                },
            },
        },
        max_completion_tokens=40,
        logit_bias={str(i): -100 for i in blank},
    )

    assert json.loads(answer.choices[0].message.content or "")["name"] in {"red", "green"}
