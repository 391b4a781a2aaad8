"""POST /v1/messages and /v1/messages/count_tokens: Anthropic's Messages API, under the same Admission
as chat, served by vLLM's own implementation of it (vllm/entrypoints/anthropic).

The client's own bytes are relayed to the engine, as for chat; the gateway validates them with
Anthropic's rules first (gateway/protocol/anthropic.py), reserves the key's limits (the prompt
estimated as chat's is, `max_tokens` for the completion: Anthropic requires it), and settles with
the usage the answer carries. Every error of these routes is answered in Anthropic's envelope, by
one translation of the gateway's APIError (`gateway.errors.anthropic_error`) at the service's edge,
and by the same one (`error_for`) in the middleware and the app's handlers for what fails before.

Only upstreams that serve the Messages API take these requests (`Capabilities.serves_messages`:
vLLM does, an OpenAI-compatible provider does not): a model served by providers alone is a 400
naming why; a fallback served by providers alone is left out of the chain.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from gateway.admission import Admission, Outcome, Ticket
from gateway.errors import APIError, InvalidRequest, anthropic_error
from gateway.http.disconnect import unless_disconnected
from gateway.limits import Estimate, TokenEstimator
from gateway.protocol.anthropic import AnthropicCountTokensRequest, AnthropicMessage, AnthropicMessagesRequest
from gateway.services.messages_stream import MessagesRelay, MessagesUsage, usage_of_message
from gateway.services.pii import Redactor
from gateway.services.upstream_call import chose, upstream_headers
from gateway.upstreams import ModelCatalog
from gateway.upstreams.affinity import affinity_key
from gateway.upstreams.attempt import Target
from gateway.upstreams.dispatch import Dispatcher
from gateway.upstreams.stream import UpstreamStream
from gateway.upstreams.timeouts import Deadline

MESSAGES = "/v1/messages"
COUNT_TOKENS = "/v1/messages/count_tokens"
# Anthropic's request headers, passed on to the engine as they came (vLLM ignores them today).
_FORWARDED = ("anthropic-version", "anthropic-beta")
# As the chat estimate counts: four characters to a token, a few tokens per message, and a fixed
# cost for an image or document (OpenAI's low-detail image).
_CHARS_PER_TOKEN = 4
_PER_MESSAGE = 4
_PER_MEDIA_BLOCK = 85
_MEDIA_BLOCKS = ("image", "document")


class MessagesService:
    def __init__(
        self, admission: Admission, dispatcher: Dispatcher, catalog: ModelCatalog, estimator: TokenEstimator
    ) -> None:
        self._admission = admission
        self._dispatcher = dispatcher
        self._catalog = catalog
        self._estimator = estimator
        # PII redaction of the user's messages under the tenant's policy (set once built); None: off.
        self.pii: Redactor | None = None

    async def create(self, request: Request) -> Response:
        try:
            async with self._admission.enter(request, MESSAGES) as ticket:
                return await self._create(ticket)
        except APIError as exc:
            return anthropic_error(exc)

    async def count_tokens(self, request: Request) -> Response:
        try:
            async with self._admission.enter(request, COUNT_TOKENS) as ticket:
                return await self._count(ticket)
        except APIError as exc:
            return anthropic_error(exc)

    async def _create(self, ticket: Ticket) -> Response:
        with ticket.stage("preprocess"):
            body, payload, parsed = await ticket.read_json(AnthropicMessagesRequest)
            refuse_remote_sources(parsed.messages)
            card = await self._catalog.resolve(parsed.model)
        model = str(card["id"])
        stream = bool(parsed.stream)
        ticket.use_model(model, stream=stream)
        plan = self._plan(model)
        raw = prompt_tokens(parsed)
        max_len = card.get("max_model_len")
        room = max(1, max_len - raw) if isinstance(max_len, int) else parsed.max_tokens
        await ticket.reserve(
            self._estimator.estimate_counted(MESSAGES, model, raw, min(parsed.max_tokens, room))
        )
        if self.pii is not None:  # the user's text under a `prompt` policy (docs/governance.md)
            redacted = await self.pii.prompt(ticket.principal.tenant_id, payload)
            body, payload = (body, payload) if redacted is None else (orjson.dumps(redacted), redacted)
        headers = upstream_headers(ticket, _FORWARDED)
        deadline = Deadline(plan[0].timeouts.total_s)
        affinity = _affinity(payload, ticket.policy.affinity_prefix_chars)
        receive = ticket.request.receive
        if not stream:
            answer, member, target = await unless_disconnected(
                receive, self._dispatcher.complete(MESSAGES, body, headers, plan, deadline, affinity=affinity)
            )
            chose(ticket, member.name, target.model)
            ticket.settle(Outcome.COMPLETED, usage=usage_of_message(answer))
            return Response(answer, media_type="application/json", headers=ticket.limit_headers)
        attempt = await unless_disconnected(
            receive, self._dispatcher.open_stream(MESSAGES, body, headers, plan, deadline, affinity=affinity)
        )
        upstream = UpstreamStream(
            attempt, inter_token_s=attempt.target.timeouts.inter_token_s, deadline=deadline, failover=None
        )
        chose(ticket, attempt.member.name, attempt.target.model)
        usage = MessagesUsage()
        ticket.defer()
        return MessagesRelay(
            upstream,
            usage=usage,
            headers=ticket.limit_headers,
            on_close=lambda outcome: ticket.settle(
                outcome, usage=usage.usage, completion_tokens=usage.deltas
            ),
        )

    async def _count(self, ticket: Ticket) -> Response:
        """The engine's own count (its tokenizer and chat template). RPM and concurrency apply; no
        tokens are reserved or charged: counting generates nothing (Anthropic's is free too)."""
        with ticket.stage("preprocess"):
            body, _, parsed = await ticket.read_json(AnthropicCountTokensRequest)
            refuse_remote_sources(parsed.messages)
            card = await self._catalog.resolve(parsed.model)
        model = str(card["id"])
        ticket.use_model(model, stream=False)
        plan = self._plan(model)[:1]  # counted by the model's own tokenizer, never a fallback's
        await ticket.reserve(Estimate(0, 0, 0))
        answer, member, target = await unless_disconnected(
            ticket.request.receive,
            self._dispatcher.complete(
                COUNT_TOKENS,
                body,
                upstream_headers(ticket, _FORWARDED),
                plan,
                Deadline(plan[0].timeouts.total_s),
            ),
        )
        chose(ticket, member.name, target.model)
        ticket.settle(Outcome.COMPLETED, usage={"prompt_tokens": 0, "completion_tokens": 0})
        return Response(answer, media_type="application/json", headers=ticket.limit_headers)

    def _plan(self, model: str) -> list[Target]:
        """The model's chain with only the upstreams that serve the Messages API: 400 when the
        model's own are all providers (an OpenAI-compatible API has no /v1/messages)."""
        plan = self._dispatcher.plan(model)
        served = [
            dataclasses.replace(
                target, members=[m for m in target.members if m.upstream.capabilities.serves_messages]
            )
            for target in plan
        ]
        if plan[0].members and not served[0].members:
            raise InvalidRequest(
                f"The model `{model}` is served by an OpenAI-compatible provider, which has no "
                "Messages API; call /v1/chat/completions for it.",
                param="model",
            )
        return [served[0], *(target for target in served[1:] if target.members)]


def refuse_remote_sources(messages: list[AnthropicMessage]) -> None:
    """A URL image or document source would have the engine fetch it, past the gateway's media
    screen (docs/security.md): 400, naming the block; base64 sources pass."""
    for i, message in enumerate(messages):
        if isinstance(message.content, str):
            continue
        for j, block in enumerate(message.content):
            found = _url_source(block.model_dump())
            if found is not None:
                raise InvalidRequest(
                    "Image and document sources of type `url` are not fetched by this gateway; "
                    "send the content as `base64`.",
                    param=f"messages[{i}].content[{j}].{found}",
                )


def _url_source(block: dict[str, Any]) -> str | None:
    """Where in `block` a URL source sits (a tool result's content may hold images), or None."""
    source = block.get("source")
    if block.get("type") in _MEDIA_BLOCKS and isinstance(source, dict) and source.get("type") == "url":
        return "source"
    content = block.get("content")
    if isinstance(content, list):
        for k, inner in enumerate(content):
            if isinstance(inner, dict) and _url_source(inner) is not None:
                return f"content[{k}].source"
    return None


def prompt_tokens(request: AnthropicCountTokensRequest) -> int:
    """The prompt's tokens, estimated before the engine counts them: text by characters, tool
    calls and results and the tool list by their JSON, media blocks at a fixed cost."""
    system = request.system
    chars = len(system) if isinstance(system, str) else sum(len(block.text) for block in system or ())
    media = 0
    for message in request.messages:
        if isinstance(message.content, str):
            chars += len(message.content)
            continue
        for block in message.content:
            if block.type in _MEDIA_BLOCKS:
                media += 1
            elif block.type == "text":
                chars += len(getattr(block, "text", ""))
            else:
                chars += len(orjson.dumps(block.model_dump(mode="json", exclude_none=True)))
    if request.tools:
        chars += len(
            orjson.dumps([tool.model_dump(mode="json", exclude_none=True) for tool in request.tools])
        )
    return (
        math.ceil(chars / _CHARS_PER_TOKEN)
        + _PER_MESSAGE * (len(request.messages) + 1)
        + _PER_MEDIA_BLOCK * media
    )


def _affinity(payload: dict[str, Any], chars: int) -> str | None:
    """Prefix affinity as chat has it: the system prompt, then the messages' text."""
    system = payload.get("system")
    messages = [{"content": system}] if system else []
    messages += list(payload.get("messages") or ())
    return affinity_key("/v1/chat/completions", {"messages": messages}, chars)
