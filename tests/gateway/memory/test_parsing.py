"""What the memory code reads from outside: the extraction model's answer (anything malformed is no
facts, never an error), mem0's filters, and the end user a chat request names."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from gateway.protocol.common import InvalidParam
from gateway.protocol.memory import MAX_FACTS, MemorySearch, scope_of
from gateway.services.memory_chat import end_user_of
from gateway.services.memory_core import parse_facts


def _answer(content: Any) -> dict[str, Any]:
    return {"choices": [{"message": {"content": content}}]}


@pytest.mark.parametrize(
    "answer",
    [
        {},
        {"choices": []},
        _answer(None),
        _answer("not json"),
        _answer('{"facts": "one"}'),
        _answer('{"other": []}'),
        _answer("[1, 2]"),
    ],
)
def test_malformed_extractions_are_no_facts(answer: dict[str, Any]) -> None:
    assert parse_facts(answer) == []


def test_facts_are_trimmed_deduplicated_and_capped() -> None:
    facts = ["  likes tea ", "likes tea", "", 3, "x" * 5000] + [f"fact {i}" for i in range(40)]
    kept = parse_facts(_answer(orjson.dumps({"facts": facts}).decode()))
    assert kept[0] == "likes tea" and kept.count("likes tea") == 1
    assert len(kept[1]) == 4000 and len(kept) == MAX_FACTS


def _scope(**body: Any) -> dict[str, Any]:
    return scope_of(MemorySearch.model_validate({"query": "q", **body}))


def test_filters_top_level_and_and() -> None:
    scope = _scope(user_id="u", filters={"AND": [{"agent_id": "a"}, {"run_id": "*"}], "metadata": {"k": 1}})
    assert scope == {"user_id": "u", "agent_id": "a", "app_id": None, "run_id": None, "metadata": {"k": 1}}


@pytest.mark.parametrize(
    ("filters", "param"),
    [
        ({"OR": [{"user_id": "a"}]}, "filters.OR"),
        ({"created_at": {"gte": "2024-01-01"}}, "filters.created_at"),
        ({"user_id": 3}, "filters.user_id"),
        ({"AND": [{"user_id": "other"}]}, "filters.AND[0].user_id"),
    ],
)
def test_unsupported_or_contradicting_filters_name_their_param(filters: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidParam) as raised:
        _scope(user_id="u", filters=filters)
    assert raised.value.param == param


@pytest.mark.parametrize(
    ("payload", "user"),
    [
        ({"user": "alice"}, "alice"),
        ({"safety_identifier": "bob"}, "bob"),
        ({"metadata": {"user_id": "carol"}}, "carol"),
        ({"user": "  "}, None),
        ({}, None),
        ({"metadata": {"user_id": 5}}, None),
    ],
)
def test_the_end_user_of_a_chat_request(payload: dict[str, Any], user: str | None) -> None:
    assert end_user_of(payload) == user
