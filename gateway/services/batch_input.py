"""A batch's input file, checked line by line as OpenAI checks it: JSON, a unique `custom_id`,
`method` POST, `url` the batch's endpoint, a `body` object; every problem is reported with its line,
as `errors.data[{code, message, param, line}]`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

# OpenAI's cap on requests per batch.
MAX_LINES = 50_000


@dataclass(frozen=True)
class Line:
    number: int  # 1-based, as OpenAI's errors count lines
    custom_id: str
    body: dict[str, Any]


class InputProblem(Exception):
    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(errors[0]["message"] if errors else "invalid input")
        self.errors = errors


def parse(data: bytes, endpoint: str) -> list[Line]:
    """The input file's requests, or `InputProblem` with every problem OpenAI would report."""
    lines: list[Line] = []
    errors: list[dict[str, Any]] = []
    seen: set[str] = set()
    for number, raw in enumerate(data.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            lines.append(_request(raw, number, endpoint, seen))
        except InputProblem as problem:
            errors.extend(problem.errors)
    if not lines and not errors:
        errors.append(error("empty_file", "The batch input file is empty."))
    if len(lines) > MAX_LINES:
        errors.append(error("too_many_tasks", f"A batch may hold at most {MAX_LINES} requests."))
    if errors:
        raise InputProblem(errors[:1000])
    return lines


def _request(raw: bytes, number: int, endpoint: str, seen: set[str]) -> Line:
    try:
        item = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InputProblem(
            [error("invalid_json_line", "This line is not parseable as valid JSON.", number)]
        ) from None
    if not isinstance(item, dict):
        raise InputProblem([error("invalid_json_line", "This line is not a JSON object.", number)])
    custom_id = item.get("custom_id")
    problems = []
    if not isinstance(custom_id, str) or not custom_id:
        problems.append(
            error(
                "missing_required_parameter", "Missing required parameter: 'custom_id'.", number, "custom_id"
            )
        )
    elif custom_id in seen:
        problems.append(
            error(
                "duplicate_custom_id",
                "The custom_id for this request is a duplicate of another request. The custom_id "
                "parameter must be unique for each request in a batch.",
                number,
                "custom_id",
            )
        )
    if item.get("method") != "POST":
        problems.append(error("invalid_method", "The method must be POST.", number, "method"))
    if item.get("url") != endpoint:
        problems.append(
            error(
                "invalid_url",
                "The URL provided for this request does not match the batch endpoint.",
                number,
                "url",
            )
        )
    if not isinstance(item.get("body"), dict):
        problems.append(
            error("missing_required_parameter", "Missing required parameter: 'body'.", number, "body")
        )
    if problems:
        raise InputProblem(problems)
    assert isinstance(custom_id, str)
    seen.add(custom_id)
    return Line(number, custom_id, item["body"])


def error(code: str, message: str, line: int | None = None, param: str | None = None) -> dict[str, Any]:
    return {"code": code, "message": message, "param": param, "line": line}
