"""Eval sets (issue 23, point 8, docs/orchestration.md "Self-monitoring"): their JSONL format and the
scorers that grade one answer.

One line is one item: the `input` (a string, or chat `messages`), what the answer should be
(`expected`), how it is graded (`scorer`) and request fields sent with it (`params`: `max_tokens`,
`temperature`, `structured_outputs`...). Scorers:

- `exact`: the answer, stripped, equals `expected` (stripped);
- `regex`: `pattern` (default: `expected`) matches the answer in full (`re.fullmatch`, stripped);
- `json_valid`: the answer parses as JSON and, given `schema`, validates against it;
- `judge`: a judge model (`judge_model`) reads the `rubric`, the question, the expected and the
  given answer and returns `{"score": 0..1}` through structured outputs; the score is the grade.

Scores are 0..1 per item; a set's score is their mean.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import jsonschema
import orjson

from gateway.errors import InvalidRequest

Scorer = Literal["exact", "regex", "json_valid", "judge"]
SCORERS: tuple[str, ...] = ("exact", "regex", "json_valid", "judge")
# Request fields an item may not set: the run decides the model and reads one JSON answer.
_FIXED = ("model", "messages", "stream", "n")
_JUDGE_SCHEMA = {
    "type": "object",
    "properties": {"score": {"type": "number", "minimum": 0, "maximum": 1}},
    "required": ["score"],
}
_DEFAULT_RUBRIC = (
    "Score 1 when the answer says what the expected answer says, 0 when not, between when partly."
)

# Asks the judge model (messages, response_format) and returns its answer's text.
Ask = Callable[[str, list[dict[str, Any]], dict[str, Any]], Awaitable[str]]


@dataclass(frozen=True)
class EvalItem:
    messages: list[dict[str, Any]]
    expected: str | None = None
    scorer: str = "exact"
    pattern: str | None = None
    schema: dict[str, Any] | None = None
    rubric: str | None = None
    judge_model: str | None = None
    params: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "messages": self.messages,
            "expected": self.expected,
            "scorer": self.scorer,
            "pattern": self.pattern,
            "schema": self.schema,
            "rubric": self.rubric,
            "judge_model": self.judge_model,
            "params": self.params,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> EvalItem:
        return cls(**raw)


def parse_jsonl(text: str, max_items: int) -> list[EvalItem]:
    """The items of a JSONL eval set; a 400 naming the first bad line, a 413 past `max_items`."""
    items: list[EvalItem] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        if len(items) >= max_items:
            raise InvalidRequest(
                f"An eval set holds at most {max_items} items.",
                param="jsonl",
                code="too_many_items",
                status=413,
            )
        try:
            raw = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise InvalidRequest(f"Line {number} is not JSON: {exc}", param="jsonl") from exc
        items.append(_item(raw, number))
    if not items:
        raise InvalidRequest("The eval set has no items.", param="jsonl")
    return items


def _item(raw: Any, number: int) -> EvalItem:
    if not isinstance(raw, dict):
        raise _bad(number, "an item is a JSON object.")
    scorer = raw.get("scorer", "exact")
    if scorer not in SCORERS:
        raise _bad(number, f"`scorer` is one of {', '.join(SCORERS)}.")
    expected = raw.get("expected")
    if expected is not None and not isinstance(expected, str):
        expected = orjson.dumps(expected).decode()
    pattern = _pattern(raw, scorer, expected, number)
    schema = raw.get("schema")
    if schema is not None and not isinstance(schema, dict):
        raise _bad(number, "`schema` is a JSON schema object.")
    params = raw.get("params") or {}
    if not isinstance(params, dict) or any(name in params for name in _FIXED):
        raise _bad(number, f"`params` is an object of request fields other than {', '.join(_FIXED)}.")
    return EvalItem(
        _messages(raw, number),
        expected,
        scorer,
        pattern,
        schema,
        raw.get("rubric"),
        raw.get("judge_model"),
        params,
    )


def _bad(number: int, message: str) -> InvalidRequest:
    return InvalidRequest(f"Line {number}: {message}", param="jsonl")


def _messages(raw: dict[str, Any], number: int) -> list[dict[str, Any]]:
    given = raw.get("input", raw.get("messages"))
    if isinstance(given, str):
        return [{"role": "user", "content": given}]
    if isinstance(given, list) and given and all(isinstance(m, dict) and "role" in m for m in given):
        return given
    raise _bad(number, "`input` is a string or a list of chat messages.")


def _pattern(raw: dict[str, Any], scorer: str, expected: str | None, number: int) -> str | None:
    """The regex scorer's pattern (default: `expected`), checked; what else each scorer needs."""
    pattern = raw.get("pattern")
    if scorer == "exact" and expected is None:
        raise _bad(number, "the `exact` scorer needs `expected`.")
    if scorer == "judge" and not raw.get("judge_model"):
        raise _bad(number, "the `judge` scorer needs `judge_model`.")
    if scorer != "regex":
        return pattern
    pattern = pattern if pattern is not None else expected
    if pattern is None:
        raise _bad(number, "the `regex` scorer needs `pattern` or `expected`.")
    try:
        re.compile(str(pattern))
    except re.error as exc:
        raise _bad(number, f"`pattern` is not a regular expression: {exc}") from exc
    return str(pattern)


async def score(item: EvalItem, answer: str, ask: Ask) -> float:
    """The item's grade of `answer`, 0..1."""
    text = answer.strip()
    if item.scorer == "exact":
        return float(text == (item.expected or "").strip())
    if item.scorer == "regex":
        return float(re.fullmatch(str(item.pattern), text, flags=re.DOTALL) is not None)
    if item.scorer == "json_valid":
        return _json_valid(text, item.schema)
    return await _judged(item, text, ask)


def _json_valid(text: str, schema: dict[str, Any] | None) -> float:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return 0.0
    if schema is None:
        return 1.0
    try:
        jsonschema.validate(value, schema)
    except (jsonschema.ValidationError, jsonschema.SchemaError):
        return 0.0
    return 1.0


async def _judged(item: EvalItem, answer: str, ask: Ask) -> float:
    question = "\n".join(str(m.get("content", "")) for m in item.messages if m.get("role") == "user")
    prompt = (
        f"{item.rubric or _DEFAULT_RUBRIC}\n\nQuestion:\n{question}\n\nExpected answer:\n"
        f"{item.expected or '(none given)'}\n\nAnswer to grade:\n{answer}\n\n"
        'Reply with JSON: {"score": <0..1>}.'
    )
    response_format = {
        "type": "json_schema",
        "json_schema": {"name": "grade", "schema": _JUDGE_SCHEMA, "strict": True},
    }
    raw = await ask(str(item.judge_model), [{"role": "user", "content": prompt}], response_format)
    try:
        grade = orjson.loads(raw).get("score")
    except (orjson.JSONDecodeError, AttributeError):
        return 0.0
    return min(1.0, max(0.0, float(grade))) if isinstance(grade, int | float) else 0.0
