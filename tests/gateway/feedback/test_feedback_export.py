"""Feedback turned into fine-tuning files: the lines themselves (supervised corrections, rated
answers, dpo pairs from corrections and from better- versus worse-rated answers to one prompt, lines
the training-file check would refuse left out), and the export through a real gateway: the file in
the Files API (purpose fine-tune), its content passing the fine-tuning validator as a job's would,
and a job created from it (not run: no training here), for the caller's tenant only."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from gateway.protocol.feedback import score
from gateway.protocol.fine_tuning_file import check_lines
from gateway.services.feedback_export import training_lines
from gateway.store.feedback import StoredFeedback
from tests.gateway.feedback.conftest import BASE, FeedbackGateway
from tests.gateway.helpers import envelope

PROMPT = [{"role": "user", "content": "Capital of France?"}]


def fb(
    n: int, *, rating: Any = None, correction: str | None = None, answer: str = "Lyon", **kw: Any
) -> StoredFeedback:
    values: dict[str, Any] = {
        "seq": n,
        "id": f"feedback_{n}",
        "created_at": datetime(2026, 12, 5),
        "target_type": "chat.completion",
        "target_id": f"chatcmpl-{n}",
        "rating": None if rating is None else str(rating),
        "score": score(rating),
        "correction": correction,
        "prompt": PROMPT,
        "answer": {"role": "assistant", "content": answer},
        "prompt_hash": "same",
        **kw,
    }
    return StoredFeedback(**values)


def decoded(lines: list[bytes]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in lines]


def test_supervised_lines_are_corrections_and_optionally_good_answers() -> None:
    rows = [
        fb(1, rating="down", correction="Paris"),
        fb(2, rating="up", answer="Paris."),
        fb(3, rating=5, answer="Paris!"),
        fb(4, rating=3, answer="Maybe Paris"),
        fb(5, rating="up", answer="x", prompt=[]),  # nothing to learn from: no prompt
        fb(6, correction="Paris", prompt=[{"role": "wizard", "content": "?"}]),  # a role the check refuses
    ]
    plain = training_lines(rows, "supervised")
    assert decoded(plain.lines) == [{"messages": [*PROMPT, {"role": "assistant", "content": "Paris"}]}]
    rated = training_lines(rows, "supervised", include_rated=True)
    assert [line["messages"][-1]["content"] for line in decoded(rated.lines)] == ["Paris", "Paris.", "Paris!"]
    assert rated.used == 3


def test_dpo_pairs_from_corrections_and_from_ratings_of_one_prompt() -> None:
    rows = [
        fb(1, rating="down", correction="Paris", answer="Lyon"),
        fb(2, rating="up", answer="Paris."),
        fb(3, rating="down", answer="Lyon"),
        fb(4, rating=2, answer="Nice"),
        fb(
            5, rating="up", answer="Rome", prompt=[{"role": "user", "content": "Italy?"}], prompt_hash="other"
        ),
        fb(6, correction="Lyon", answer="Lyon"),  # a correction equal to the answer: no pair
    ]
    lines = decoded(training_lines(rows, "dpo").lines)
    pairs = [
        (line["preferred_output"][0]["content"], line["non_preferred_output"][0]["content"]) for line in lines
    ]
    # The correction over its answer; then, for the prompt rated three ways, the best over each other.
    assert pairs == [("Paris", "Lyon"), ("Paris.", "Nice"), ("Paris.", "Lyon")]
    assert all(line["input"]["messages"] == PROMPT for line in lines)
    text = "".join(json.dumps(line) + "\n" for line in lines * 4)
    assert check_lines(text, "dpo") == (12, [])


def _correct(gateway: FeedbackGateway, caller: Any, count: int, **extra: Any) -> list[str]:
    ids = []
    for n in range(count):
        completion = gateway.completion(caller, f"Question {n}?", f"wrong {n}")
        answer = caller.post(
            "/v1/feedback", {"completion_id": completion, "correction": f"right {n}", **extra}
        )
        assert answer.status_code == 200, answer.text
        ids.append(completion)
    return ids


def test_export_makes_a_training_file_a_job_accepts(feedback_gateway: FeedbackGateway) -> None:
    acme, rival = feedback_gateway.caller("acme"), feedback_gateway.caller("rival")
    _correct(feedback_gateway, acme, 9, label="fact")
    response = feedback_gateway.response(acme, "Capital of Spain?", "Barcelone")
    acme.post("/v1/feedback", {"response_id": response, "correction": "Madrid", "label": "fact"})
    conversation = acme.client.conversations.create(
        items=[
            {"type": "message", "role": "user", "content": "Capital of Italy?"},
            {"type": "message", "role": "assistant", "content": "Milan"},
        ]
    )
    item = acme.client.conversations.items.list(conversation.id, order="asc").data[1].id
    acme.post("/v1/feedback", {"conversation_id": conversation.id, "item_id": item, "correction": "Rome"})
    acme.post("/v1/feedback", {"completion_id": feedback_gateway.completion(acme, "Q", "A"), "rating": "up"})

    exported = acme.post("/v1/feedback/export", {"method": "supervised", "filename": "fixes.jsonl"})
    assert exported.status_code == 200, exported.text
    body = exported.json()
    assert (body["object"], body["method"], body["examples"], body["feedback_used"]) == (
        "feedback.export",
        "supervised",
        11,
        11,
    )
    file = body["file"]
    assert (file["purpose"], file["filename"], file["object"]) == ("fine-tune", "fixes.jsonl", "file")
    assert acme.client.files.retrieve(file["id"]).bytes == file["bytes"]
    text = acme.client.files.content(file["id"]).text
    assert check_lines(text, "supervised") == (11, [])
    lines = [json.loads(line) for line in text.splitlines()]
    assert lines[0]["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Question 0?"},
        {"role": "assistant", "content": "right 0"},
    ]
    assert lines[9]["messages"] == [
        {"role": "system", "content": "Answer in French."},
        {"role": "user", "content": "Capital of Spain?"},
        {"role": "assistant", "content": "Madrid"},
    ]
    assert lines[10]["messages"] == [
        {"role": "user", "content": "Capital of Italy?"},
        {"role": "assistant", "content": "Rome"},
    ]
    job = acme.client.fine_tuning.jobs.create(model=BASE, training_file=file["id"])
    assert (job.status, job.training_file) == ("validating_files", file["id"])
    # The label filter: the conversation's correction had none.
    assert acme.post("/v1/feedback/export", {"label": "fact"}).json()["examples"] == 10
    # Another tenant's export sees none of it; nor can it read the file.
    refused = envelope(rival.post("/v1/feedback/export", {}), 400)
    assert refused["code"] == "not_enough_examples" and "0 supervised example(s)" in refused["message"]
    envelope(rival.get(f"/v1/files/{file['id']}"), 404)


def test_dpo_export_and_a_dpo_job(feedback_gateway: FeedbackGateway) -> None:
    acme = feedback_gateway.caller("acme")
    _correct(feedback_gateway, acme, 10)
    better = feedback_gateway.completion(acme, "Say hi", "Hello there!")
    worse = feedback_gateway.completion(acme, "Say hi", "Go away.")
    acme.post("/v1/feedback", {"completion_id": better, "rating": 5})
    acme.post("/v1/feedback", {"completion_id": worse, "rating": 1})
    # Two choices of one completion, rated apart.
    both = feedback_gateway.completion(acme, "Say bye", "", choices=["Bye!", "Whatever."])
    acme.post("/v1/feedback", {"completion_id": both, "choice_index": 0, "rating": "up"})
    acme.post("/v1/feedback", {"completion_id": both, "choice_index": 1, "rating": "down"})
    body = acme.post("/v1/feedback/export", {"method": "dpo"}).json()
    assert (body["method"], body["examples"], body["feedback_used"]) == ("dpo", 12, 14)
    text = acme.client.files.content(body["file"]["id"]).text
    assert check_lines(text, "dpo") == (12, [])
    lines = [json.loads(line) for line in text.splitlines()]
    assert lines[0] == {
        "input": {
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Question 0?"},
            ]
        },
        "preferred_output": [{"role": "assistant", "content": "right 0"}],
        "non_preferred_output": [{"role": "assistant", "content": "wrong 0"}],
    }
    rated = {
        (line["preferred_output"][0]["content"], line["non_preferred_output"][0]["content"])
        for line in lines[10:]
    }
    assert rated == {("Hello there!", "Go away."), ("Bye!", "Whatever.")}
    job = acme.client.fine_tuning.jobs.create(
        model=BASE,
        training_file=body["file"]["id"],
        method={"type": "dpo", "dpo": {"hyperparameters": {"beta": 0.2}}},
    )
    assert job.status == "validating_files" and job.method is not None and job.method.type == "dpo"
    # Too few for a file: nine corrections make nine examples.
    few = feedback_gateway.caller("few")
    _correct(feedback_gateway, few, 9)
    envelope(few.post("/v1/feedback/export", {"method": "dpo"}), 400)
    envelope(few.post("/v1/feedback/export", {"method": "rlhf"}), 400)
