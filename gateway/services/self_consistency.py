"""Self-consistency virtual models (docs/orchestration.md, "Self-consistency"): a chat request for
one (`mode: self_consistency` in TANTRA_VIRTUAL_MODELS) is answered by the served `model` sampled `k`
times in one engine call (`n` = k), each sample's final answer read by the model's extractor, and
the majority's first sample returned with its vote share: `tantra_votes` in the body and the header
`x-tantra-votes: <votes>/<k>`. It is one request: admitted, limited (its reservation covers the k
samples), billed (the k samples' tokens) and traced once. A streaming request streams the chosen
answer once the vote is taken (no answer is known before all k are done).

Answers are compared as `confidence.normalised` reads them (whitespace and case aside); a sample
the extractor finds no answer in does not vote; a tie goes to the answer sampled first.
"""

from __future__ import annotations

import dataclasses
import re
import weakref
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.responses import Response, StreamingResponse

from gateway.admission import Outcome, Ticket
from gateway.errors import InvalidRequest, no_such_model
from gateway.http.disconnect import unless_disconnected
from gateway.http.sse import DONE, SSE_HEADERS, sse_event
from gateway.routing.config import EnsembleModel, Extractor, SelfConsistencyModel
from gateway.services.confidence import FIELD, ConfidenceAsk, complete_json, normalised
from gateway.services.upstream_call import chose
from gateway.settings.policy import PolicySource
from gateway.upstreams.dispatch import Dispatcher
from gateway.upstreams.stream import UpstreamRequest

VOTES_HEADER = "x-tantra-votes"
VOTES_FIELD = "tantra_votes"
# The samples are asked for whole (the vote needs them all); the chosen one is streamed after.
STREAM_KEYS = ("stream", "stream_options")


@dataclasses.dataclass(frozen=True)
class VotePlan:
    virtual: str
    spec: SelfConsistencyModel | EnsembleModel
    # What the client asked of the answer's form: a stream, and usage in it.
    stream: bool
    stream_usage: bool


def extract(extractor: Extractor, text: str) -> str | None:
    """The final answer `extractor` reads in `text`; None when it finds none."""
    if extractor.type == "last_line":
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        return lines[-1] if lines else None
    if extractor.type == "json_field":
        return _json_field(text, extractor.field or "")
    matches = list(re.finditer(extractor.pattern or "", text))
    if not matches:
        return None
    last = matches[-1]
    found = last.group(1) if last.re.groups else last.group(0)
    return found.strip() if found is not None else None


def _json_field(text: str, path: str) -> str | None:
    try:
        value: Any = orjson.loads(text.strip())
    except orjson.JSONDecodeError:
        return None
    for key in path.split("."):
        if isinstance(value, dict) and key in value:
            value = value[key]
        elif isinstance(value, list) and key.isdigit() and int(key) < len(value):
            value = value[int(key)]
        else:
            return None
    if value is None or isinstance(value, dict | list):
        return None if value is None else orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    return str(value).lower() if isinstance(value, bool) else str(value)


@dataclasses.dataclass(frozen=True)
class Vote:
    chosen: int  # the index of the choice returned
    answer: str | None
    votes: int
    answers: list[str | None]

    def share(self, k: int) -> float:
        return self.votes / k if k else 0.0


def tally(extractor: Extractor, texts: list[str]) -> Vote:
    """The majority of the final answers in `texts`, and the first sample giving it."""
    answers = [extract(extractor, text) for text in texts]
    keys = [normalised(answer) if answer is not None else None for answer in answers]
    counts = Counter(key for key in keys if key is not None)
    if not counts:
        return Vote(0, None, 0, answers)
    # most_common sorts stably: of equal counts, the answer sampled first wins.
    key, votes = counts.most_common(1)[0]
    chosen = keys.index(key)
    return Vote(chosen, answers[chosen], votes, answers)


class SelfConsistency:
    """Answers for the self-consistency virtual models of the policy in force."""

    def __init__(self, policy: PolicySource, dispatcher: Dispatcher) -> None:
        self._policy = policy
        self._dispatcher = dispatcher
        # Each admitted request's plan, until its ticket goes (one entry per request in flight).
        self._plans: weakref.WeakKeyDictionary[Ticket, VotePlan] = weakref.WeakKeyDictionary()

    def owns(self, model: str | None) -> bool:
        found = self._policy.current.virtual_models.get(model) if model is not None else None
        return isinstance(found, SelfConsistencyModel | EnsembleModel)

    def prepare(self, ticket: Ticket, payload: dict[str, Any]) -> str:
        """Turn the request for the virtual model into the one for its served model, k samples;
        the served model's name. 404 unless the key may use both names."""
        name = str(payload.get("model"))
        spec = ticket.policy.virtual_models.get(name)
        if not isinstance(spec, SelfConsistencyModel | EnsembleModel) or not ticket.principal.may_use(name):
            raise no_such_model(name)
        served = [spec.model] if isinstance(spec, SelfConsistencyModel) else spec.models
        if not all(ticket.principal.may_use(model) for model in served):
            raise no_such_model(name)
        if payload.get("n") not in (None, 1):
            raise InvalidRequest(f"`n` must be 1 for `{name}`: it asks for its answers itself.", param="n")
        modalities = payload.get("modalities")
        if isinstance(modalities, list) and "audio" in modalities:
            raise InvalidRequest(f"`{name}` answers in text only.", param="modalities")
        options = payload.get("stream_options")
        self._plans[ticket] = VotePlan(
            virtual=name,
            spec=spec,
            stream=bool(payload.get("stream")),
            stream_usage=isinstance(options, dict) and bool(options.get("include_usage")),
        )
        # `n`: the answers the reservation covers (an ensemble's members are each sent n = 1).
        payload["model"], payload["n"] = served[0], len(served) if isinstance(spec, EnsembleModel) else spec.k
        if isinstance(spec, SelfConsistencyModel) and payload.get("temperature") is None:
            payload["temperature"] = spec.temperature
        return served[0]

    def plan_for(self, ticket: Ticket) -> VotePlan | None:
        return self._plans.get(ticket)

    async def answer(
        self, ticket: Ticket, request: UpstreamRequest, plan: VotePlan, ask: ConfidenceAsk | None
    ) -> Response:
        """Sample, vote, settle, and answer with the majority (JSON, or a stream of it)."""
        if isinstance(plan.spec, EnsembleModel):
            from gateway.services.ensemble import ensemble_answer  # it reads this module's vote

            with ticket.stage("ensemble"):
                body = await unless_disconnected(
                    ticket.request.receive, ensemble_answer(self._dispatcher, ticket, request, plan.spec, ask)
                )
            return respond(ticket, body, plan)
        sent = {key: value for key, value in request.payload.items() if key not in STREAM_KEYS}
        request = dataclasses.replace(request, body=orjson.dumps(sent), payload=sent)
        with ticket.stage("samples"):
            answer, upstream, served = await unless_disconnected(
                ticket.request.receive, self._dispatcher.answer(request)
            )
        chose(ticket, upstream, served)
        if ask is not None:
            answer = complete_json(answer, ask)
        body = orjson.loads(answer)
        choices = body.get("choices") or []
        texts = [content_of(choice) for choice in choices]
        with ticket.stage("vote"):
            vote = tally(plan.spec.extractor, texts)
        k = len(choices)
        chosen: dict[str, Any] = dict(choices[vote.chosen]) if choices else {"index": 0}
        chosen["index"] = 0
        share = round(vote.share(k), 6)
        if isinstance(chosen.get(FIELD), dict):
            chosen[FIELD] = {**chosen[FIELD], "agreement": share, "score": share}
        body["choices"] = [chosen]
        body[VOTES_FIELD] = {
            "answer": vote.answer,
            "votes": vote.votes,
            "k": k,
            "share": share,
            "answers": vote.answers,
        }
        ticket.headers[VOTES_HEADER] = f"{vote.votes}/{k}"
        _record(ticket, plan, vote, k)
        return respond(ticket, body, plan)


def respond(ticket: Ticket, body: dict[str, Any], plan: VotePlan) -> Response:
    """Settle with the answer's usage (every sample's or member's) and answer: JSON, or a stream."""
    ticket.settle(Outcome.COMPLETED, usage=body.get("usage") if isinstance(body.get("usage"), dict) else None)
    if not plan.stream:
        return Response(orjson.dumps(body), media_type="application/json", headers=ticket.limit_headers)
    return StreamingResponse(
        _events(body, plan.stream_usage),
        headers={**{name.decode(): value.decode() for name, value in SSE_HEADERS}, **ticket.limit_headers},
    )


def content_of(choice: Any) -> str:
    message = choice.get("message") if isinstance(choice, dict) else None
    content = message.get("content") if isinstance(message, dict) else None
    return content if isinstance(content, str) else ""


def _record(ticket: Ticket, plan: VotePlan, vote: Vote, k: int) -> None:
    record = ticket.record
    if record is not None and record.tracing.enabled:
        record.span.set_attribute("tantra.self_consistency.virtual", plan.virtual)
        record.span.set_attribute("tantra.self_consistency.k", k)
        record.span.set_attribute("tantra.self_consistency.votes", vote.votes)


async def _events(body: dict[str, Any], with_usage: bool) -> AsyncIterator[bytes]:
    """The chosen answer as chat completion chunks: the role, the content, the end (with the
    vote or the ensemble's record, and the confidence), usage when asked, [DONE]."""
    choice = body["choices"][0]
    message = choice.get("message") or {}
    head: dict[str, Any] = {key: body[key] for key in ("id", "created", "model") if key in body}
    head["object"] = "chat.completion.chunk"

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
        part = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return sse_event({**head, "choices": [part], **extra})

    yield chunk({"role": "assistant", "content": ""})
    reasoning = message.get("reasoning") or message.get("reasoning_content")
    if reasoning:
        yield chunk({"reasoning": reasoning, "reasoning_content": reasoning})
    delta = {key: message[key] for key in ("content", "tool_calls") if message.get(key)}
    if delta:
        yield chunk(delta)
    extra: dict[str, Any] = {key: value for key, value in body.items() if key.startswith("tantra_")}
    if FIELD in choice:
        extra[FIELD] = [{"index": 0, **choice[FIELD]}]
    yield chunk({}, choice.get("finish_reason") or "stop", **extra)
    if with_usage and body.get("usage") is not None:
        yield sse_event({**head, "choices": [], "usage": body["usage"]})
    yield DONE
