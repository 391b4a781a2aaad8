"""Confidence and self-consistency, the parts without I/O: the measures from log-probabilities,
the logprobs taken out again as the client asked, a stream's confidence through the relay's
`StreamUsage`, the extractors and the vote, and the configuration's checks. The proof against the
real engine is test_orchestration_engine.py."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from gateway import Settings
from gateway.protocol import ChatCompletionRequest, parse_request
from gateway.protocol.common import InvalidParam
from gateway.routing.config import EnsembleModel, Extractor, SelfConsistencyModel, VirtualModel
from gateway.services.confidence import (
    ConfidenceAsk,
    StreamConfidence,
    agreement,
    complete_json,
    measure,
    without_extensions,
)
from gateway.services.ensemble import Member, _first, _summed
from gateway.services.relay import StreamUsage
from gateway.services.self_consistency import extract, tally


def entry(token: str, logprob: float, top: list[float]) -> dict[str, Any]:
    return {
        "token": token,
        "logprob": logprob,
        "bytes": list(token.encode()),
        "top_logprobs": [{"token": f"{token}{i}", "logprob": lp, "bytes": []} for i, lp in enumerate(top)],
    }


# Two tokens: p = 0.5 (alternatives 0.5, 0.5) and p = 0.25 (alternatives 0.25 x 4).
LOGPROBS = {
    "content": [
        entry("a", math.log(0.5), [math.log(0.5), math.log(0.5)]),
        entry("b", math.log(0.25), [math.log(0.25)] * 4),
    ]
}


def ask(**fields: Any) -> ConfidenceAsk:
    request = parse_request(
        ChatCompletionRequest,
        {
            "model": "m",
            "messages": [{"role": "user", "content": "hi"}],
            "tantra": {"confidence": True},
            **fields,
        },
    )
    found = ConfidenceAsk.of(request)
    assert found is not None
    return found


def test_the_measures() -> None:
    result = measure(LOGPROBS)
    assert result["tokens"] == 2
    assert result["mean_token_prob"] == pytest.approx(0.375)
    assert result["min_token_prob"] == pytest.approx(0.25)
    assert result["mean_logprob"] == pytest.approx((math.log(0.5) + math.log(0.25)) / 2, abs=1e-6)
    # Entropy of the renormalised top-k: ln 2 and ln 4.
    assert result["mean_entropy"] == pytest.approx((math.log(2) + math.log(4)) / 2, abs=1e-6)
    assert result["score"] == pytest.approx(math.sqrt(0.5 * 0.25), abs=1e-6)
    assert measure(None) == measure({"content": []}) and measure(None)["tokens"] == 0


def test_agreement_ignores_case_and_spacing() -> None:
    assert agreement(["Yes", " yes ", "no", "YES"]) == [0.75, 0.75, 0.25, 0.75]


def test_the_extension_is_validated_and_what_the_engine_is_sent() -> None:
    with pytest.raises(InvalidParam) as caught:
        parse_request(
            ChatCompletionRequest,
            {"model": "m", "messages": [{"role": "user", "content": "x"}], "tantra": {"confidnce": True}},
        )
    assert caught.value.param == "tantra.confidnce"
    assert ask().fields(5) == {"logprobs": True, "top_logprobs": 5}
    assert ask(logprobs=True, top_logprobs=8).fields(5) == {"logprobs": True, "top_logprobs": 8}
    assert ask(logprobs=True, top_logprobs=-1).fields(5)["top_logprobs"] == -1
    off = parse_request(ChatCompletionRequest, {"model": "m", "messages": [{"role": "user", "content": "x"}]})
    assert ConfidenceAsk.of(off) is None
    body, payload = without_extensions(
        b'{"model":"m","tantra":{"confidence":true}}', {"model": "m", "tantra": {}}
    )
    assert payload == {"model": "m"} and orjson.loads(body) == {"model": "m"}


def answer(*texts: str) -> bytes:
    choices = [
        {
            "index": i,
            "message": {"role": "assistant", "content": text},
            "logprobs": orjson.loads(orjson.dumps(LOGPROBS)),
            "finish_reason": "stop",
        }
        for i, text in enumerate(texts)
    ]
    return orjson.dumps({"id": "x", "object": "chat.completion", "choices": choices, "usage": {}})


def test_json_answer_strips_or_trims_what_the_client_did_not_ask() -> None:
    stripped = orjson.loads(complete_json(answer("yes"), ask()))["choices"][0]
    assert stripped["logprobs"] is None
    assert stripped["tantra_confidence"]["tokens"] == 2 and "agreement" not in stripped["tantra_confidence"]
    trimmed = orjson.loads(complete_json(answer("yes"), ask(logprobs=True, top_logprobs=1)))["choices"][0]
    assert [len(e["top_logprobs"]) for e in trimmed["logprobs"]["content"]] == [1, 1]
    # n > 1: the agreement between the samples is the score.
    choices = orjson.loads(complete_json(answer("yes", "Yes", "no"), ask()))["choices"]
    assert [c["tantra_confidence"]["agreement"] for c in choices] == pytest.approx([2 / 3, 2 / 3, 1 / 3])
    assert choices[2]["tantra_confidence"]["score"] == pytest.approx(1 / 3)


def event(body: object) -> bytes:
    return b"data: " + orjson.dumps(body) + b"\n\n"


def stream(n: int) -> bytes:
    role = {"role": "assistant", "content": ""}
    events = [event({"id": "c", "choices": [{"index": i, "delta": role}]}) for i in range(n)]
    for item in LOGPROBS["content"]:
        for i in range(n):
            chunk = {"index": i, "delta": {"content": item["token"]}, "logprobs": {"content": [item]}}
            events.append(event({"id": "c", "choices": [chunk]}))
    events += [
        event({"id": "c", "choices": [{"index": i, "delta": {}, "finish_reason": "stop"}]}) for i in range(n)
    ]
    events.append(
        event({"id": "c", "choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 2 * n}})
    )
    return b"".join(events) + b"data: [DONE]\n\n"


def chunks(data: bytes) -> list[dict[str, Any]]:
    return [orjson.loads(line[6:]) for line in data.split(b"\n\n") if line.startswith(b"data: {")]


@pytest.mark.parametrize("forward", [True, False])
def test_a_stream_carries_it_on_its_last_chunk(forward: bool) -> None:
    reader = StreamUsage(forward_usage=forward, confidence=StreamConfidence(ask()))
    data = stream(2)
    out = chunks(b"".join(reader.feed(data[i : i + 50]) for i in range(0, len(data), 50)) + reader.release())
    assert all(choice.get("logprobs") is None for chunk in out for choice in chunk["choices"])
    last = out[-1]
    if forward:  # the usage chunk, the last one
        assert last["choices"] == [] and "usage" in last
    else:  # each choice's terminal chunk carries it, as the usage chunk's other fields
        assert last["choices"][0]["finish_reason"] == "stop"
    confidence = last["tantra_confidence"]
    assert [c["index"] for c in confidence] == [0, 1]
    assert confidence[0]["tokens"] == 2 and confidence[0]["agreement"] == 1.0
    assert confidence[0]["min_token_prob"] == pytest.approx(0.25)


def test_a_stream_keeps_the_logprobs_asked() -> None:
    reader = StreamUsage(forward_usage=True, confidence=StreamConfidence(ask(logprobs=True, top_logprobs=2)))
    out = chunks(reader.feed(stream(1)))
    kept = [c["logprobs"]["content"][0] for chunk in out for c in chunk["choices"] if c.get("logprobs")]
    assert [len(item["top_logprobs"]) for item in kept] == [2, 2]
    assert out[-1]["tantra_confidence"][0]["tokens"] == 2


def test_extractors() -> None:
    assert extract(Extractor(), "Let me think.\n\nThe answer is 4\n  \n") == "The answer is 4"
    assert extract(Extractor(type="json_field", field="answer.value"), '{"answer": {"value": 4}}') == "4"
    assert extract(Extractor(type="json_field", field="ok"), '{"ok": true}') == "true"
    assert extract(Extractor(type="json_field", field="answer"), "not json") is None
    regex = Extractor(type="regex", pattern=r"answer: (\w+)")
    assert extract(regex, "answer: no ... answer: yes") == "yes"
    assert extract(Extractor(type="regex", pattern=r"\d+"), "1 then 22") == "22"
    assert extract(regex, "nothing here") is None
    assert extract(Extractor(), "") is None


def test_the_vote() -> None:
    vote = tally(Extractor(), ["x\nB", "y\nA", "z\nb", "w\na", ""])
    # A tie (2 for b, 2 for a) goes to the answer sampled first; the empty sample does not vote.
    assert (vote.chosen, vote.answer, vote.votes) == (0, "B", 2)
    assert vote.answers == ["B", "A", "b", "a", None]
    assert tally(Extractor(), ["", ""]).votes == 0
    vote = tally(Extractor(type="json_field", field="v"), ['{"v": 1}', '{"v": 2}', '{"v": 2}'])
    assert (vote.chosen, vote.answer, vote.votes, vote.share(3)) == (1, "2", 2, pytest.approx(2 / 3))


def test_the_configuration() -> None:
    settings = Settings(
        models={"m": {}},
        virtual_models={
            "sc": {
                "mode": "self_consistency",
                "model": "m",
                "extractor": {"type": "json_field", "field": "a"},
            },
            "auto": {"candidates": {"m": {}, "sc": {}}},
        },
    )
    assert isinstance(settings.virtual_models["sc"], SelfConsistencyModel)
    assert settings.virtual_models["sc"].k == 5
    assert isinstance(settings.virtual_models["auto"], VirtualModel)
    assert any("'sc' is a virtual model" in p for p in settings.virtual_models_problems({"m"}))
    for wrong in (
        {"type": "json_field"},
        {"type": "regex"},
        {"type": "regex", "pattern": "("},
    ):
        with pytest.raises(ValidationError):
            SelfConsistencyModel(
                mode="self_consistency", model="m", extractor=Extractor.model_validate(wrong)
            )
    with pytest.raises(ValidationError):
        SelfConsistencyModel(mode="self_consistency", model="m", k=1)


async def test_an_ensemble_takes_the_first_answer_and_passes_failures_over() -> None:
    async def fails() -> Member:
        raise RuntimeError("down")

    async def answers(delay: float, model: str) -> Member:
        await asyncio.sleep(delay)
        return Member(model, {}, "engine", model)

    tasks = [asyncio.create_task(fails()), asyncio.create_task(answers(0.05, "slow"))]
    tasks.append(asyncio.create_task(answers(0.01, "fast")))
    members, failures = await _first(tasks)
    assert [m.model for m in members] == ["fast"] and len(failures) == 1
    for task in tasks:
        task.cancel()
    members, failures = await _first([asyncio.create_task(fails())])
    assert members == [] and isinstance(failures[0], RuntimeError)
    assert _summed(
        [{"prompt_tokens": 2, "completion_tokens": 1, "total_tokens": 3}, None, {"prompt_tokens": 2}]
    ) == {
        "prompt_tokens": 4,
        "completion_tokens": 1,
        "total_tokens": 3,
    }


def test_an_ensembles_configuration() -> None:
    settings = Settings(
        models={"a": {}, "b": {}},
        virtual_models={
            "ens": {"mode": "ensemble", "models": ["a", "b", "sc"]},
            "sc": {"mode": "self_consistency", "model": "a"},
        },
    )
    assert isinstance(settings.virtual_models["ens"], EnsembleModel)
    assert any("'sc' is a virtual model" in p for p in settings.virtual_models_problems({"a", "b"}))
    with pytest.raises(ValidationError):
        EnsembleModel(mode="ensemble", models=["a", "b"], combine="judge")
    with pytest.raises(ValidationError):
        EnsembleModel(mode="ensemble", models=["a"])
