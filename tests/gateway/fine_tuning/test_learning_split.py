"""The learning loop's pure parts (gateway/services/learning_loop.py): the held-out split is stable
per feedback id and near its fraction, held-out rows become exact-scored eval items (the correction
for supervised, the preferred answer for dpo), and the alias drops the job id."""

from __future__ import annotations

from gateway.services.learning_loop import alias, eval_items, held_out
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
