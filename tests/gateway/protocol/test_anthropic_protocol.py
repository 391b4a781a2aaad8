"""The Messages API's schema: what Anthropic (and vLLM) accept passes, with unknown keys kept; what
Anthropic refuses is a 400 naming the field."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.protocol import InvalidParam, parse_request
from gateway.protocol.anthropic import AnthropicCountTokensRequest, AnthropicMessagesRequest, error_type

BASE: dict[str, Any] = {"model": "m", "max_tokens": 16, "messages": [{"role": "user", "content": "Hi"}]}
TOOL = {"name": "get_weather", "description": "Weather.", "input_schema": {"type": "object"}}


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"system": "Be brief."},
        {"system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}]},
        {"stop_sequences": ["\n\n"], "temperature": 1.0, "top_p": 0.9, "top_k": 40, "stream": True},
        {"metadata": {"user_id": "u-1"}},
        {"tools": [TOOL], "tool_choice": {"type": "auto", "disable_parallel_tool_use": True}},
        {"tools": [TOOL], "tool_choice": {"type": "tool", "name": "get_weather"}},
        {"tools": [{"type": "web_search_20250305", "name": "web_search"}], "tool_choice": {"type": "any"}},
        {"thinking": {"type": "enabled", "budget_tokens": 1024}, "max_tokens": 2048},
        {"thinking": {"type": "disabled"}},
        {"thinking": {"type": "adaptive", "display": "summarized"}},
        # vLLM's extras and Anthropic's newer fields: kept and forwarded.
        {"chat_template_kwargs": {"enable_thinking": False}, "cache_salt": "s", "service_tier": "auto"},
        {
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "Weather?"}]},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                        {"type": "tool_use", "id": "t1", "name": "get_weather", "input": {"city": "Oslo"}},
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": "t1", "content": "Sunny", "is_error": False},
                        {
                            "type": "image",
                            "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
                        },
                    ],
                },
            ]
        },
    ],
)
def test_accepted(extra: dict[str, Any]) -> None:
    parsed = parse_request(AnthropicMessagesRequest, {**BASE, **extra})
    for key in ("chat_template_kwargs", "cache_salt", "service_tier"):
        if key in extra:
            assert (parsed.model_extra or {})[key] == extra[key]


@pytest.mark.parametrize(
    ("change", "param", "code"),
    [
        ({"model": None}, "model", "missing_required_parameter"),
        ({"max_tokens": None}, "max_tokens", "missing_required_parameter"),
        ({"messages": None}, "messages", "missing_required_parameter"),
        ({"messages": []}, "messages", "empty_array"),
        ({"max_tokens": 0}, "max_tokens", "integer_below_min_value"),
        ({"max_tokens": "many"}, "max_tokens", "invalid_type"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].role", "invalid_value"),
        ({"messages": [{"role": "user"}]}, "messages[0].content", "missing_required_parameter"),
        (
            {"messages": [{"role": "user", "content": [{"type": "text"}]}]},
            "messages[0].content[0].text",
            None,
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "video"}]}]},
            "messages[0].content[0].type",
            None,
        ),
        ({"system": 3}, "system", None),
        ({"temperature": 1.5}, "temperature", "decimal_above_max_value"),
        ({"top_p": -0.5}, "top_p", "decimal_below_min_value"),
        ({"top_k": -1}, "top_k", "integer_below_min_value"),
        ({"stop_sequences": "stop"}, "stop_sequences", "invalid_type"),
        ({"tool_choice": {"type": "tool"}}, "tool_choice.name", "missing_required_parameter"),
        ({"tool_choice": {"type": "sometimes"}}, "tool_choice.type", None),
        ({"tools": [{"name": "f"}]}, "tools[0].input_schema", "missing_required_parameter"),
        ({"thinking": {"type": "enabled", "budget_tokens": 100}}, "thinking.budget_tokens", None),
        ({"thinking": {"type": "enabled", "budget_tokens": 2048}}, "thinking.budget_tokens", None),
        ({"metadata": "user"}, "metadata", None),
    ],
)
def test_refused(change: dict[str, Any], param: str, code: str | None) -> None:
    body = {**BASE, **change}
    body = {key: value for key, value in body.items() if value is not None}
    with pytest.raises(InvalidParam) as caught:
        parse_request(AnthropicMessagesRequest, body)
    assert caught.value.param == param
    if code is not None:
        assert caught.value.code == code


def test_count_tokens_takes_no_max_tokens() -> None:
    parse_request(AnthropicCountTokensRequest, {"model": "m", "messages": BASE["messages"], "tools": [TOOL]})
    with pytest.raises(InvalidParam) as caught:
        parse_request(AnthropicCountTokensRequest, {"model": "m"})
    assert caught.value.param == "messages"


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
        (405, "invalid_request_error"),
        (413, "request_too_large"),
        (429, "rate_limit_error"),
        (500, "api_error"),
        (502, "api_error"),
        (503, "overloaded_error"),
        (504, "timeout_error"),
        (529, "overloaded_error"),
    ],
)
def test_error_types(status: int, kind: str) -> None:
    assert error_type(status) == kind
