"""The OpenAI schema: what is accepted, and the `param` an error names (no engine needed)."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.protocol import ChatCompletionRequest, CompletionRequest, InvalidParam, parse_request

USER = [{"role": "user", "content": "hi"}]


def problem(body: Any, schema: type = ChatCompletionRequest) -> tuple[str | None, str]:
    with pytest.raises(InvalidParam) as caught:
        parse_request(schema, body)
    return caught.value.param, caught.value.message


def test_every_documented_chat_parameter_is_accepted() -> None:
    body = {
        "model": "m",
        "messages": [
            {"role": "developer", "content": "be brief"},
            {"role": "system", "content": [{"type": "text", "text": "sys"}]},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "hi"},
                    {"type": "image_url", "image_url": {"url": "data:x"}},
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "42"},
        ],
        "frequency_penalty": 0.5,
        "presence_penalty": -0.5,
        "logit_bias": {"9707": -100},
        "logprobs": True,
        "top_logprobs": 5,
        "max_tokens": 10,
        "max_completion_tokens": 10,
        "n": 2,
        "seed": 7,
        "stop": ["\n", "END"],
        "stream": True,
        "stream_options": {"include_usage": True},
        "temperature": 0.7,
        "top_p": 0.9,
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
        "tool_choice": {"type": "function", "function": {"name": "f"}},
        "parallel_tool_calls": False,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "x", "schema": {"type": "object"}},
        },
        "user": "u1",
        "metadata": {"k": "v"},
        "store": False,
        "service_tier": "auto",
        # vLLM's extras pass through too
        "top_k": 20,
        "min_p": 0.05,
        "repetition_penalty": 1.1,
        "ignore_eos": True,
        "guided_choice": ["a", "b"],
    }
    request = parse_request(ChatCompletionRequest, body)
    assert request.model_extra == {"guided_choice": ["a", "b"]}


def shape(value: Any) -> str:
    """The JSON shape of a prompt as Python types: `list[list[int]]` for a batch of token ids."""
    if isinstance(value, list):
        inner = {shape(item) for item in value}
        assert len(inner) == 1, f"mixed list {value!r}"
        return f"list[{inner.pop()}]"
    return type(value).__name__


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("text", "str"),
        (["a", "b"], "list[str]"),
        ([1, 2, 3], "list[int]"),
        ([[1, 2], [3]], "list[list[int]]"),
    ],
    ids=["text", "texts", "token-ids", "token-id-lists"],
)
def test_completion_prompts_of_every_shape(prompt: Any, expected: str) -> None:
    """Each of OpenAI's four prompt shapes is kept as it came: token ids stay ints, texts stay
    texts, and nothing is flattened or joined; echo and logprobs ride along."""
    body = {"model": "m", "prompt": prompt, "echo": True, "logprobs": 2}
    request = parse_request(CompletionRequest, body)
    assert request.prompt == prompt
    assert shape(request.prompt) == expected
    assert request.echo is True and request.logprobs == 2
    assert request.model_dump(exclude_unset=True) == body


def test_a_prompt_mixing_texts_and_token_ids_is_a_400_naming_the_prompt() -> None:
    param, _ = problem({"model": "m", "prompt": [1, "a"]}, CompletionRequest)
    assert param is not None and param.startswith("prompt")


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "m"}, "messages"),
        ({"model": "m", "messages": []}, "messages"),
        ({"model": "m", "messages": "hi"}, "messages"),
        ({"model": "m", "messages": [{"content": "x"}]}, "messages[0].role"),
        ({"model": "m", "messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        ({"model": "m", "messages": [{"role": "tool", "content": {}}]}, "messages[0].content"),
        (
            {"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]},
            "messages[0].content[0].text",
        ),
        ({"model": "m", "messages": USER, "temperature": 2.5}, "temperature"),
        ({"model": "m", "messages": USER, "temperature": "hot"}, "temperature"),
        ({"model": "m", "messages": USER, "top_p": 1.5}, "top_p"),
        ({"model": "m", "messages": USER, "n": 0}, "n"),
        ({"model": "m", "messages": USER, "max_tokens": 0}, "max_tokens"),
        ({"model": "m", "messages": USER, "max_completion_tokens": -1}, "max_completion_tokens"),
        ({"model": "m", "messages": USER, "stop": 5}, "stop"),
        ({"model": "m", "messages": USER, "logit_bias": {"1": "up"}}, "logit_bias.1"),
        ({"model": "m", "messages": USER, "top_logprobs": 3}, "top_logprobs"),
        ({"model": "m", "messages": USER, "stream_options": {"include_usage": True}}, "stream_options"),
        ({"model": "m", "messages": USER, "response_format": {"type": "xml"}}, "response_format.type"),
        (
            {"model": "m", "messages": USER, "response_format": {"type": "json_schema"}},
            "response_format.json_schema",
        ),
        ({"model": "m", "messages": USER, "tool_choice": "required"}, "tool_choice"),
        (
            {
                "model": "m",
                "messages": USER,
                "tools": [{"type": "function", "function": {"name": "f"}}],
                "tool_choice": {"type": "function", "function": {"name": "g"}},
            },
            "tool_choice",
        ),
        (
            {"model": "m", "messages": USER, "tools": [{"type": "function", "function": {"name": 5}}]},
            "tools[0].function.name",
        ),
    ],
)
def test_errors_name_the_offending_param(body: dict[str, Any], param: str) -> None:
    assert problem(body)[0] == param


def test_missing_parameter_message_says_so() -> None:
    assert problem({"model": "m"})[1] == "Missing required parameter: 'messages'."


def test_body_must_be_an_object() -> None:
    assert problem([1, 2]) == (None, "The request body must be a JSON object.")


def test_completion_rules() -> None:
    assert problem({"model": "m", "prompt": []}, CompletionRequest)[0] == "prompt"
    assert problem({"model": "m"}, CompletionRequest)[0] == "prompt"


def test_at_most_four_stop_sequences_as_openai_and_vllm_accept() -> None:
    parse_request(ChatCompletionRequest, {"model": "m", "messages": USER, "stop": ["a", "b", "c", "d"]})
    chat = problem({"model": "m", "messages": USER, "stop": ["a"] * 5})
    completion = problem({"model": "m", "prompt": "a", "stop": ["a"] * 5}, CompletionRequest)
    assert chat[0] == completion[0] == "stop"
    assert "maximum length 4" in chat[1]
