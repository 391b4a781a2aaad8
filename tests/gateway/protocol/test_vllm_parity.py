"""Issue 17, points 5 and 8 at the schema: what vLLM 0.32 accepts passes, what does nothing says so."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.protocol import ChatCompletionRequest, CompletionRequest, InvalidParam, parse_request

USER = [{"role": "user", "content": "hi"}]
TOOL = {"type": "function", "function": {"name": "lookup"}}


def chat(**fields: Any) -> dict[str, Any]:
    return {"model": "m", "messages": USER, **fields}


def completion(**fields: Any) -> dict[str, Any]:
    return {"model": "m", "prompt": "hi", **fields}


def refusal(body: dict[str, Any], schema: type = ChatCompletionRequest) -> InvalidParam:
    with pytest.raises(InvalidParam) as caught:
        parse_request(schema, body)
    return caught.value


@pytest.mark.parametrize(
    "body",
    [
        chat(response_format={"type": "json_object", "extra": 1}),
        chat(response_format={"type": "text", "note": "x"}),
        chat(
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "my schema.v1", "schema": {}},
                "x": 1,
            }
        ),
        chat(response_format={"type": "json_schema", "json_schema": {"name": "n" * 100, "extra": True}}),
        chat(tools=[{"type": "function", "function": {"name": "a b/c:" + "d" * 70}}]),
        chat(tools=[TOOL], tool_choice={"function": {"name": "lookup"}, "extra": 1}),
        chat(logprobs=True, top_logprobs=-1),
        chat(logprobs=True, top_logprobs=50),
        chat(stream_options={}),
        chat(service_tier="auto"),
        chat(service_tier="default"),
        chat(prediction=None, web_search_options=None),
        chat(messages=[{"role": "tool", "content": "42"}]),
        chat(messages=[{"role": "user", "content": [{"text": "hi"}]}]),
        chat(top_k=5, chat_template_kwargs={"x": 1}, unknown_extra=[1, 2]),
        chat(messages=[{"role": "critic", "content": "hi"}, {"role": "system"}, *USER]),
        chat(logit_bias={"1": 200}, n=200, metadata={"a": 1}, modalities="text"),
        chat(functions=[{"description": "x"}], function_call="required"),
    ],
)
def test_chat_bodies_vllm_accepts_pass(body: dict[str, Any]) -> None:
    parse_request(ChatCompletionRequest, body)


@pytest.mark.parametrize(
    "body",
    [
        completion(logprobs=-1),
        completion(logprobs=40),
        completion(echo=True, max_tokens=0),
        {"model": "m", "prompt_embeds": "AAAA"},
        {"model": "m", "prompt_embeds": ["AAAA"], "prompt": ""},
    ],
)
def test_completion_bodies_vllm_accepts_pass(body: dict[str, Any]) -> None:
    parse_request(CompletionRequest, body)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (chat(logprobs=True, top_logprobs=-2), "top_logprobs"),
        (chat(top_logprobs=3), "top_logprobs"),
        (chat(tools=[]), "tools"),
        (chat(tool_choice="auto"), "tool_choice"),
        (chat(tools=[TOOL], tool_choice={"type": "function", "function": {"name": "other"}}), "tool_choice"),
        (chat(stream_options={"include_usage": True}), "stream_options"),
        (
            chat(response_format={"type": "json_schema", "json_schema": {"schema": {}}}),
            "response_format.json_schema.name",
        ),
    ],
)
def test_chat_rules_vllm_also_enforces(body: dict[str, Any], param: str) -> None:
    assert refusal(body).param == param


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (completion(max_tokens=0), "max_tokens"),
        (completion(logprobs=-2), "logprobs"),
        (completion(prompt=""), "prompt"),
        ({"model": "m"}, "prompt"),
        ({"model": "m", "prompt_embeds": []}, "prompt"),
    ],
)
def test_completion_rules_vllm_also_enforces(body: dict[str, Any], param: str) -> None:
    assert refusal(body, CompletionRequest).param == param


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (chat(prediction={"type": "content", "content": "x"}), "prediction"),
        (chat(web_search_options={}), "web_search_options"),
        (chat(service_tier="flex"), "service_tier"),
        (chat(service_tier="priority"), "service_tier"),
        (completion(service_tier="scale"), "service_tier"),
        (completion(prediction={"type": "content", "content": "x"}), "prediction"),
    ],
)
def test_fields_that_would_do_nothing_are_a_400_naming_them(body: dict[str, Any], param: str) -> None:
    schema = CompletionRequest if "prompt" in body else ChatCompletionRequest
    error = refusal(body, schema)
    assert error.param == param
    assert param in error.message
