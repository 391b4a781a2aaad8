"""Validation 400s carry OpenAI's `code`, derived from the kind of validation error in one mapping."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.protocol import ChatCompletionRequest, CompletionRequest, InvalidParam, parse_request
from gateway.protocol.realtime import parse_client_event
from gateway.protocol.validation import error_code

USER = [{"role": "user", "content": "hi"}]


def chat(**fields: Any) -> dict[str, Any]:
    return {"model": "m", "messages": USER, **fields}


def coded(body: Any, schema: type = ChatCompletionRequest) -> tuple[str | None, str | None]:
    with pytest.raises(InvalidParam) as caught:
        parse_request(schema, body)
    return caught.value.param, caught.value.code


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"model": "m"}, "messages", "missing_required_parameter"),
        (chat(messages=[]), "messages", "empty_array"),
        (chat(model=7), "model", "invalid_type"),
        (chat(max_tokens="many"), "max_tokens", "invalid_type"),
        (chat(messages="hi"), "messages", "invalid_type"),
        (chat(stream=[True]), "stream", "invalid_type"),
        (chat(n=0), "n", "integer_below_min_value"),
        (chat(max_tokens=0), "max_tokens", "integer_below_min_value"),
        (chat(seed=2**70), "seed", "integer_above_max_value"),
        (chat(tool_choice="sometimes"), "tool_choice", "invalid_value"),
        (chat(reasoning_effort="huge"), "reasoning_effort", "invalid_value"),
        (chat(temperature=2.5), "temperature", "decimal_above_max_value"),
        (chat(temperature=3), "temperature", "decimal_above_max_value"),
        (chat(top_p=-0.1), "top_p", "decimal_below_min_value"),
        (chat(presence_penalty=-3), "presence_penalty", "decimal_below_min_value"),
        (chat(stop=["a"] * 5), "stop", "array_above_max_length"),
        (chat(stream_options={"include_usage": True}), "stream_options", "invalid_value"),
        ([1], None, "invalid_type"),
    ],
)
def test_chat_errors_carry_openai_codes(body: Any, param: str | None, code: str) -> None:
    assert coded(body) == (param, code)


def test_completion_errors_carry_openai_codes() -> None:
    assert coded({"model": "m"}, CompletionRequest) == ("prompt", "missing_required_parameter")
    assert coded({"model": "m", "prompt": "a", "n": 0}, CompletionRequest) == ("n", "integer_below_min_value")


def test_realtime_events_carry_the_same_codes() -> None:
    with pytest.raises(InvalidParam) as caught:
        parse_client_event({"type": "session.update", "session": {"voice": "v" * 65}})
    assert (caught.value.param, caught.value.code) == ("session.voice", "string_above_max_length")


@pytest.mark.parametrize(
    ("kind", "given", "ctx", "code"),
    [
        ("string_too_long", "x" * 9, {"max_length": 8}, "string_above_max_length"),
        ("string_too_short", "", {"min_length": 1}, "string_below_min_length"),
        ("too_long", [1, 2], {"max_length": 1}, "array_above_max_length"),
        ("too_short", [1], {"min_length": 2}, "array_below_min_length"),
        ("too_short", [], {"min_length": 1}, "empty_array"),
        ("less_than_equal", 5, {"le": 4}, "integer_above_max_value"),
        ("less_than", 5, {"lt": 4.0}, "decimal_above_max_value"),
        ("greater_than_equal", -1, {"ge": 0}, "integer_below_min_value"),
        ("greater_than", -0.5, {"gt": 0}, "decimal_below_min_value"),
        ("int_parsing", "x", None, "invalid_type"),
        ("int_from_float", 1.5, None, "invalid_type"),
        ("dict_type", [], None, "invalid_type"),
        ("model_attributes_type", 1, None, "invalid_type"),
        ("literal_error", "z", {"expected": "'a'"}, "invalid_value"),
        ("string_pattern_mismatch", "a b", {"pattern": "x"}, "invalid_value"),
        ("value_error", 1, None, "invalid_value"),
        ("union_tag_not_found", {}, None, "missing_required_parameter"),
        ("missing", None, None, "missing_required_parameter"),
        ("extra_forbidden", 1, None, "unknown_parameter"),
    ],
)
def test_one_mapping_from_the_validator_error_kind(
    kind: str, given: Any, ctx: dict[str, Any] | None, code: str
) -> None:
    assert error_code(kind, given, ctx) == code
