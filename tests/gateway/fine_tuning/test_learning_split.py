"""The learning loop's pure parts (gateway/services/learning_loop.py): the held-out split is stable
per feedback id and near its fraction, held-out rows become eval items (the correction for
supervised, the preferred answer for dpo) graded by the policy's scorer, a `judge` policy's grades
come from its judge model asked as the policy's key (a judge that fails promotes nothing), and the
alias drops the job id. The judge is a fake here: the gateway's own call to a model is what the
evals service's tests exercise for real."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import orjson

from gateway.errors import APIError
from gateway.services.learning_loop import LearningLoop, LoopOptions, alias, eval_items, held_out
from gateway.store.fine_tuning import FineTuningJobRow
from tests.gateway.feedback.test_feedback_export import PROMPT, fb


def test_the_split_is_stable_and_near_its_fraction() -> None:
    ids = [f"feedback_{n:05d}" for n in range(4000)]
    first = [held_out(i, 0.25) for i in ids]
    assert first == [held_out(i, 0.25) for i in ids]
    assert 0.22 < sum(first) / len(ids) < 0.28
    # A larger fraction keeps every row a smaller one held out.
    assert all(held_out(i, 0.5) for i, kept in zip(ids, first, strict=True) if kept)
    assert not any(held_out(i, 0.0) for i in ids)


def test_held_out_rows_become_exact_eval_items() -> None:
    rows = [fb(1, rating="down", correction="Paris"), fb(2, rating="up")]
    (item,) = eval_items(rows, "supervised")
    assert (item.messages, item.expected, item.scorer) == (PROMPT, "Paris", "exact")
    assert item.params == {"temperature": 0}
    (pair,) = eval_items([fb(3, rating="down", correction="Paris")], "dpo")
    assert (pair.messages, pair.expected) == (PROMPT, "Paris")
    assert eval_items([fb(4, rating="up")], "supervised") == []


def test_the_alias_is_the_model_name_without_its_job_id() -> None:
    assert alias("qwen2-tiny", "t_1", "loop") == "ft:qwen2-tiny:t_1:loop"


def test_a_judge_policy_makes_judged_items() -> None:
    policy = {"scorer": "judge", "judge_model": "judge-m", "rubric": "Same city?"}
    (item,) = eval_items([fb(1, rating="down", correction="Paris")], "supervised", policy)
    assert (item.scorer, item.judge_model, item.rubric, item.expected) == (
        "judge",
        "judge-m",
        "Same city?",
        "Paris",
    )
    # A policy stored before the scorer existed grades exactly.
    (plain,) = eval_items([fb(2, rating="down", correction="Paris")], "supervised", {"method": "supervised"})
    assert (plain.scorer, plain.judge_model) == ("exact", None)


class _Loop(LearningLoop):
    """The loop's scoring with its calls to the gateway answered here: the model answers
    `answers[model]`, the judge `grades[answer]` (an APIError when `judge_fails`)."""

    def __init__(self, answers: dict[str, str], grades: dict[str, float], judge_fails: bool = False) -> None:
        self.options = LoopOptions(max_tokens=16)
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.events: list[str] = []
        self.audits: list[tuple[str, dict[str, Any]]] = []
        self._answers, self._grades, self._judge_fails = answers, grades, judge_fails

    async def _post(
        self, policy: dict[str, Any], request_id: str, path: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        self.calls.append((request_id, body))
        if "response_format" not in body:
            content = self._answers[body["model"]]
        elif self._judge_fails:
            raise APIError("judge-m is overloaded", status=503)
        else:
            graded = next(a for a in self._grades if a in body["messages"][0]["content"])
            content = orjson.dumps({"score": self._grades[graded]}).decode()
        return {"choices": [{"message": {"role": "assistant", "content": content}}]}

    async def _event(self, job_id: str, message: str, data: dict[str, Any] | None = None) -> None:
        self.events.append(message)

    async def _audit(self, tenant_id: str, action: str, details: dict[str, Any]) -> None:
        self.audits.append((action, details))


POLICY = {"key_id": "key_1", "scorer": "judge", "judge_model": "judge-m", "rubric": "Same city?"}


async def test_the_judge_grades_each_held_out_answer() -> None:
    loop = _Loop({"new": "Paris, of course", "old": "Lyon"}, {"Paris, of course": 0.75, "Lyon": 0.0})
    items = eval_items([fb(n, rating="down", correction="Paris") for n in (1, 2)], "supervised", POLICY)
    assert await loop._score(POLICY, "cycle_1", "new", items) == 0.75
    assert await loop._score(POLICY, "cycle_1", "old", items) == 0.0
    judged = [(rid, body) for rid, body in loop.calls if "response_format" in body]
    assert [rid for rid, _ in judged][:2] == ["cycle_1-0-new-judge", "cycle_1-1-new-judge"]
    _, body = judged[0]
    assert body["model"] == "judge-m" and body["temperature"] == 0 and body["max_tokens"] == 16
    assert body["response_format"]["type"] == "json_schema"
    prompt = body["messages"][0]["content"]
    assert prompt.startswith("Same city?") and "Expected answer:\nParis" in prompt
    assert "Answer to grade:\nParis, of course" in prompt


class _State:
    """The loop's state store: no promoted version, and no change allowed."""

    async def state(self, tenant_id: str) -> dict[str, Any]:
        return {}

    async def update_state(self, *_: Any, **__: Any) -> bool:
        raise AssertionError("a failed judgement moves neither the cursor nor the promoted version")


async def test_a_failing_judge_promotes_nothing() -> None:
    loop = _Loop({"ft:new": "Paris", "tiny-gla": "Lyon"}, {}, judge_fails=True)
    loop.store = _State()  # type: ignore[assignment]
    items = eval_items([fb(1, rating="down", correction="Paris")], "supervised", POLICY)
    trained = FineTuningJobRow(id="ftjob-1", fine_tuned_model="ft:new")
    policy = {**POLICY, "base_model": "tiny-gla"}
    cycle: Any = SimpleNamespace(id="learncycle-1")  # the cycle's job: only its id is read
    decided = await loop._decide(cycle, "t_1", policy, trained, items, cursor=5)
    assert decided["promoted"] is False and "judge-m is overloaded" in decided["reason"]
    assert [action for action, _ in loop.audits] == ["learning_loop.failed"]
    assert "the judge failed" in loop.events[0]
