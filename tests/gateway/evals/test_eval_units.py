"""Eval sets' format and scorers, and the panel's chart, without an engine (fakes for the judge)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
import pytest

from gateway.errors import APIError
from gateway.routes.panel_evals import HEIGHT, WIDTH, chart
from gateway.services.evals import EvalItem, parse_jsonl, score
from gateway.store.evals import EvalRunRow


async def never(model: str, messages: list[dict[str, Any]], response_format: dict[str, Any]) -> str:
    raise AssertionError("only the judge scorer asks a model")


def test_lines_become_items() -> None:
    items = parse_jsonl(
        "\n".join(
            [
                '{"input": "2+2?", "expected": "4"}',
                "",
                '{"input": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}], '
                '"scorer": "regex", "expected": "\\\\d+", "params": {"max_tokens": 3}}',
                '{"input": "json", "scorer": "json_valid", "schema": {"type": "object"}}',
                '{"input": "judge", "scorer": "judge", "judge_model": "m", "expected": {"a": 1}}',
            ]
        ),
        max_items=10,
    )
    assert [item.scorer for item in items] == ["exact", "regex", "json_valid", "judge"]
    assert items[0].messages == [{"role": "user", "content": "2+2?"}]
    assert items[1].pattern == "\\d+" and items[1].params == {"max_tokens": 3}
    assert items[3].expected == '{"a":1}'
    assert EvalItem.from_json(items[1].as_json()) == items[1]


@pytest.mark.parametrize(
    ("text", "status", "said"),
    [
        ("{", 400, "Line 1 is not JSON"),
        ("[1]", 400, "JSON object"),
        ('{"input": 3, "expected": "x"}', 400, "`input`"),
        ('{"input": "x", "scorer": "bleu"}', 400, "`scorer`"),
        ('{"input": "x", "scorer": "judge"}', 400, "judge_model"),
        ('{"input": "x", "scorer": "regex"}', 400, "pattern"),
        ('{"input": "x", "expected": "y", "params": {"model": "z"}}', 400, "params"),
        ("", 400, "no items"),
        ('{"input": "x", "expected": "y"}\n' * 3, 413, "at most 2"),
    ],
)
def test_bad_lines_are_refused(text: str, status: int, said: str) -> None:
    with pytest.raises(APIError) as caught:
        parse_jsonl(text, max_items=2)
    assert caught.value.status == status and said in caught.value.message


async def test_scorers() -> None:
    def item(line: dict[str, Any]) -> EvalItem:
        return parse_jsonl(orjson.dumps({"input": "q", **line}).decode(), 5)[0]

    assert await score(item({"expected": "Paris"}), " Paris\n", never) == 1.0
    assert await score(item({"expected": "Paris"}), "paris", never) == 0.0
    assert await score(item({"scorer": "regex", "pattern": r"\d+ apples"}), "12 apples", never) == 1.0
    assert await score(item({"scorer": "regex", "pattern": r"\d+"}), "12 apples", never) == 0.0  # in full
    schema = {"type": "object", "required": ["ok"]}
    assert await score(item({"scorer": "json_valid"}), "[1, 2]", never) == 1.0
    assert await score(item({"scorer": "json_valid"}), "{not", never) == 0.0
    assert await score(item({"scorer": "json_valid", "schema": schema}), '{"ok": 1}', never) == 1.0
    assert await score(item({"scorer": "json_valid", "schema": schema}), '{"no": 1}', never) == 0.0


async def test_the_judge_reads_the_rubric_and_answers_through_structured_outputs() -> None:
    asked: list[tuple[str, str, dict[str, Any]]] = []

    def judge(reply: str) -> Any:
        async def ask(model: str, messages: list[dict[str, Any]], response_format: dict[str, Any]) -> str:
            asked.append((model, messages[0]["content"], response_format))
            return reply

        return ask

    graded = parse_jsonl(
        '{"input": "2+2?", "expected": "4", "scorer": "judge", "judge_model": "big", "rubric": "Be strict."}',
        5,
    )[0]
    assert await score(graded, "four", judge('{"score": 0.75}')) == 0.75
    model, prompt, response_format = asked[0]
    assert model == "big" and prompt.startswith("Be strict.") and "four" in prompt and "2+2?" in prompt
    assert response_format["type"] == "json_schema"
    assert response_format["json_schema"]["schema"]["required"] == ["score"]
    assert await score(graded, "x", judge("not json")) == 0.0
    assert await score(graded, "x", judge('{"score": 7}')) == 1.0  # clamped


def _run(version: str, value: float, regression: bool = False) -> EvalRunRow:
    return EvalRunRow(
        id=f"r{version}{value}",
        set_id="s",
        model="m",
        version=version,
        score=value,
        passed=0,
        total=1,
        results=[],
        regression=regression,
        created_at=datetime(2026, 1, 1),
    )


def test_the_chart_spans_the_box_and_lists_versions() -> None:
    drawn = chart([_run("v1", 1.0), _run("v1", 0.5), _run("v2", 0.0, regression=True)])
    assert [(p["x"], p["y"]) for p in drawn["points"]] == [(0, 0), (WIDTH / 2, HEIGHT / 2), (WIDTH, HEIGHT)]
    assert drawn["versions"] == [
        {"version": "v1", "score": 0.5, "runs": 2},
        {"version": "v2", "score": 0.0, "runs": 1},
    ]
    assert drawn["latest"].regression is True
    assert chart([])["points"] == [] and chart([])["latest"] is None
