"""The batch input file's validation as OpenAI reports it, and the output and error lines' shapes
(gateway/services/batch_work.py), without an engine."""

from __future__ import annotations

import json

import orjson
import pytest

from gateway.services.batch_input import InputProblem, Line, parse
from gateway.services.batch_work import _expired_line, _line, request_line_id

CHAT = "/v1/chat/completions"


def _raw(**fields: object) -> bytes:
    line: dict[str, object] = {"custom_id": "a", "method": "POST", "url": CHAT, "body": {"model": "m"}}
    line.update(fields)
    return json.dumps(line).encode()


def test_valid_lines_are_numbered_from_one_and_blank_lines_skipped() -> None:
    data = b"\n".join([_raw(custom_id="a"), b"", _raw(custom_id="b"), b"  "])
    assert parse(data, CHAT) == [Line(1, "a", {"model": "m"}), Line(3, "b", {"model": "m"})]


def test_every_problem_is_reported_with_its_line() -> None:
    data = b"\n".join(
        [
            _raw(custom_id="a"),
            _raw(custom_id="a"),
            _raw(custom_id="b", url="/v1/embeddings"),
            _raw(custom_id="c", method="GET"),
            b"{not json",
            _raw(custom_id="d", body="text"),
            json.dumps({"method": "POST", "url": CHAT, "body": {}}).encode(),
            b"[1, 2]",
        ]
    )
    with pytest.raises(InputProblem) as problem:
        parse(data, CHAT)
    assert [(error["code"], error["line"], error["param"]) for error in problem.value.errors] == [
        ("duplicate_custom_id", 2, "custom_id"),
        ("invalid_url", 3, "url"),
        ("invalid_method", 4, "method"),
        ("invalid_json_line", 5, None),
        ("missing_required_parameter", 6, "body"),
        ("missing_required_parameter", 7, "custom_id"),
        ("invalid_json_line", 8, None),
    ]


def test_an_empty_file_fails() -> None:
    with pytest.raises(InputProblem) as problem:
        parse(b"\n\n", CHAT)
    assert problem.value.errors[0]["code"] == "empty_file"


def test_output_and_error_lines_are_openai_s() -> None:
    line = Line(7, "x", {})
    ok = orjson.loads(_line("batch_1", line, 200, "batch_1-7", {"object": "chat.completion"}))
    assert ok == {
        "id": request_line_id("batch_1", 7),
        "custom_id": "x",
        "response": {"status_code": 200, "request_id": "batch_1-7", "body": {"object": "chat.completion"}},
        "error": None,
    }
    # The id is fixed by batch and line: a line redone after a crash keeps it.
    assert ok["id"].startswith("batch_req_") and ok["id"] == request_line_id("batch_1", 7)
    assert request_line_id("batch_1", 8) != ok["id"]
    refused = {
        "error": {"message": "bad", "type": "invalid_request_error", "param": None, "code": "model_not_found"}
    }
    failed = orjson.loads(_line("batch_1", line, 404, "batch_1-7", refused))
    assert failed["response"]["status_code"] == 404
    assert failed["error"] == {"code": "model_not_found", "message": "bad"}
    expired = orjson.loads(_expired_line("batch_1", line))
    assert expired["response"] is None and expired["error"]["code"] == "batch_expired"
