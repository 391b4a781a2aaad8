"""Ensemble virtual models (docs/orchestration.md, "Ensembles"): a chat request for one
(`mode: ensemble` in TANTRA_VIRTUAL_MODELS) is sent to each of its served `models` at once (each a
child span of the request, through the dispatcher: each model's own upstreams, retries and
breakers), and their answers are combined:

- `vote`: each answer's final answer read by the `extractor`, the majority's first answer (in the
  order of `models`) returned, as self-consistency's vote does;
- `judge`: the `judge` model is shown the conversation's last user turn and the numbered answers, its
  answer constrained to one of the numbers (vLLM's structured outputs `choice`);
- `first`: the first answer to come back; the others are cancelled (their connections closed, which
  makes vLLM abort them).

It is one request: admitted once, its reservation covering one completion per model, settled once
with every call's tokens summed (the judge's too; a cancelled call's tokens are not reported by
the engine and are not billed), in one ledger row priced as the model whose answer is returned.
A member that fails drops out; the request fails only when every member does.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from typing import Any

import orjson

from gateway.admission import Ticket
from gateway.routing.config import EnsembleModel, Judge
from gateway.services.confidence import FIELD, ConfidenceAsk, complete_json
from gateway.services.self_consistency import STREAM_KEYS, content_of, extract, tally
from gateway.services.upstream_call import chose
from gateway.upstreams.dispatch import Dispatcher
from gateway.upstreams.stream import UpstreamRequest

ENSEMBLE_HEADER = "x-tantra-ensemble"
ENSEMBLE_FIELD = "tantra_ensemble"
_USAGE_KEYS = ("prompt_tokens", "completion_tokens", "total_tokens")


@dataclasses.dataclass
class Member:
    model: str
    body: dict[str, Any]
    upstream: str
    served: str


async def ensemble_answer(
    dispatcher: Dispatcher,
    ticket: Ticket,
    request: UpstreamRequest,
    spec: EnsembleModel,
    ask: ConfidenceAsk | None,
) -> dict[str, Any]:
    """The answer returned (a chat completion body with one choice, `tantra_ensemble` and the
    summed usage); the ticket names the chosen model's upstream."""
    base = {key: value for key, value in request.payload.items() if key not in (*STREAM_KEYS, "n")}

    async def member(model: str) -> Member:
        payload = {**base, "model": model}
        call = dataclasses.replace(request, body=orjson.dumps(payload), payload=payload, model=model)
        with ticket.stage(f"member:{model}"):
            answer, upstream, served = await dispatcher.answer(call)
        return Member(model, orjson.loads(answer), upstream, served)

    tasks = [asyncio.create_task(member(model)) for model in spec.models]
    try:
        members, failures = await (_first(tasks) if spec.combine == "first" else _all(tasks))
    finally:
        for task in tasks:
            task.cancel()
    if not members:
        raise failures[0]
    usages = [m.body.get("usage") for m in members]
    record: dict[str, Any]
    if spec.combine == "vote":
        vote = tally(spec.extractor, [_text(m) for m in members])
        chosen, record = vote.chosen, {"votes": vote.votes, "share": round(vote.votes / len(members), 6)}
    elif spec.combine == "judge":
        assert spec.judge is not None
        with ticket.stage("judge"):
            chosen, judged = await _judge(dispatcher, request, spec.judge, base, members)
        usages.append(judged)
        record = {"judge": spec.judge.model}
    else:
        chosen, record = 0, {}
    winner = members[chosen]
    chose(ticket, winner.upstream, winner.served)
    body = _assembled(spec, members, winner, record, ask)
    body["usage"] = _summed(usages)
    ticket.headers[ENSEMBLE_HEADER] = f"{winner.model}; combine={spec.combine}"
    record_span(ticket, spec, winner.model)
    return body


def _assembled(
    spec: EnsembleModel,
    members: list[Member],
    winner: Member,
    record: dict[str, Any],
    ask: ConfidenceAsk | None,
) -> dict[str, Any]:
    """The winner's answer as the one choice, with the ensemble's record (and its confidence)."""
    body = orjson.loads(complete_json(orjson.dumps(winner.body), ask)) if ask is not None else winner.body
    choice = dict((body.get("choices") or [{}])[0])
    choice["index"] = 0
    if isinstance(choice.get(FIELD), dict) and "share" in record:
        choice[FIELD] = {**choice[FIELD], "agreement": record["share"], "score": record["share"]}
    body["choices"] = [choice]
    voted = spec.combine == "vote"
    body[ENSEMBLE_FIELD] = {
        "combine": spec.combine,
        "chosen": winner.model,
        **record,
        "answers": [
            {"model": m.model, "answer": extract(spec.extractor, _text(m)) if voted else _text(m)}
            for m in members
        ],
        "failed": [model for model in spec.models if model not in {m.model for m in members}],
    }
    return body


async def _all(tasks: list[asyncio.Task[Member]]) -> tuple[list[Member], list[BaseException]]:
    results = await asyncio.gather(*tasks, return_exceptions=True)
    members = [result for result in results if isinstance(result, Member)]
    return members, [result for result in results if isinstance(result, BaseException)]


async def _first(tasks: list[asyncio.Task[Member]]) -> tuple[list[Member], list[BaseException]]:
    """The first member to answer (the others are cancelled by the caller); every failure if none."""
    failures: list[BaseException] = []
    pending = set(tasks)
    while pending:
        done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            error = task.exception()
            if error is None:
                return [task.result()], failures
            failures.append(error)
    return [], failures


def _text(member: Member) -> str:
    choices = member.body.get("choices") or []
    return content_of(choices[0]) if choices else ""


async def _judge(
    dispatcher: Dispatcher,
    request: UpstreamRequest,
    judge: Judge,
    base: dict[str, Any],
    members: list[Member],
) -> tuple[int, Any]:
    """The index of the answer the judge model chooses (the first when its answer is unreadable),
    and the judge call's usage."""
    numbers = [str(number) for number in range(1, len(members) + 1)]
    listed = "\n\n".join(f"Answer {n}:\n{_text(m)}" for n, m in zip(numbers, members, strict=True))
    prompt = f"Conversation:\n{_last_user_text(base)}\n\n{listed}\n\nThe number of the best answer:"
    payload = {
        "model": judge.model,
        "messages": [{"role": "system", "content": judge.instructions}, {"role": "user", "content": prompt}],
        "max_tokens": 4,
        "temperature": 0,
        "structured_outputs": {"choice": numbers},
    }
    call = dataclasses.replace(request, body=orjson.dumps(payload), payload=payload, model=judge.model)
    answer, _, _ = await dispatcher.answer(call)
    body = orjson.loads(answer)
    found = re.search(r"\d+", content_of((body.get("choices") or [{}])[0]))
    index = int(found.group()) - 1 if found else 0
    return (index if 0 <= index < len(members) else 0), body.get("usage")


def _last_user_text(payload: dict[str, Any]) -> str:
    for message in reversed(payload.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def _summed(usages: list[Any]) -> dict[str, int]:
    total = dict.fromkeys(_USAGE_KEYS, 0)
    for usage in usages:
        if isinstance(usage, dict):
            for key in _USAGE_KEYS:
                value = usage.get(key)
                total[key] += value if isinstance(value, int) else 0
    return total


def record_span(ticket: Ticket, spec: EnsembleModel, chosen: str) -> None:
    record = ticket.record
    if record is not None and record.tracing.enabled:
        record.span.set_attribute("tantra.ensemble.combine", spec.combine)
        record.span.set_attribute("tantra.ensemble.models", list(spec.models))
        record.span.set_attribute("tantra.ensemble.chosen", chosen)
