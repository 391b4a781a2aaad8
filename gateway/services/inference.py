"""The inference path shared by /v1/chat/completions and /v1/completions:
authenticate, parse, resolve, limit, relay, and settle what the request used."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from adapters import TEXT_ONLY, Modality
from gateway.admission import (
    Gate,
    admitting,
    check_allowed,
    load_json,
    open_tab,
    read_body,
    stage,
    validate,
)
from gateway.auth import Authenticator, Principal
from gateway.errors import (
    APIError,
)
from gateway.limits import Demand, TokenEstimator
from gateway.limits.accounting import Accountant, Tab
from gateway.media.service import MediaService, Prepared, with_media_usage
from gateway.observability import RequestRecord, bind_request, passthrough_traceparent, record_of
from gateway.protocol import ChatCompletionRequest
from gateway.protocol.common import SamplingParams, StreamOptions
from gateway.services.relay import ClientGone, SSERelay, StreamOutcome, StreamUsage, unless_disconnected
from gateway.settings.reload import LiveConfig
from gateway.upstreams import ModelCatalog
from gateway.upstreams.dispatch import Dispatcher
from gateway.upstreams.failover import Failover, Transcript, can_continue
from gateway.upstreams.timeouts import Deadline


class InferenceService:
    """Validates a request against OpenAI's schema, then relays the client's own bytes to the engine.

    The body is forwarded as received (no re-serialisation), so every parameter, OpenAI's or
    vLLM's, reaches the engine exactly as the client wrote it. The one addition: a stream whose
    client did not ask for usage asks the engine for it, so that the real usage can be settled;
    that usage event is taken out again before the client sees it.
    """

    def __init__(
        self,
        dispatcher: Dispatcher,
        catalog: ModelCatalog,
        max_body_bytes: int,
        *,
        authenticator: Authenticator,
        accountant: Accountant,
        live: LiveConfig[Any] | None = None,
        media: MediaService | None = None,
        default_accepts: Collection[Modality] = TEXT_ONLY,
    ) -> None:
        self._live = live
        self._dispatcher = dispatcher
        self._media = media
        self._default_accepts = tuple(default_accepts)
        self._catalog = catalog
        self._max_body_bytes = max_body_bytes
        self.gate = Gate(authenticator)
        self._accountant = accountant
        self._estimator: TokenEstimator = accountant.estimator

    async def authenticate(self, request: Request) -> Principal:
        return await self.gate.authenticate(request)

    async def authenticate_headers(self, headers: Mapping[str, str]) -> Principal:
        return await self.gate.authenticate_headers(headers)

    async def handle(self, request: Request, schema: type[SamplingParams], path: str) -> Response | SSERelay:
        record = record_of(request.state)
        # The configuration in force when the request arrived, for all of it: a reload mid-stream
        # changes the next request, never this one.
        config = self._live.current if self._live is not None else None
        principal = await self.gate.identify(request, record, config)
        tab = open_tab(self._accountant, principal, request, path)
        with admitting(tab, record):
            body, parsed, payload, media = await self._admit(
                request, schema, path, principal, tab, record, config
            )
        assert tab.reservation is not None
        limit_headers = tab.limit_headers

        headers = {"x-request-id": request.state.engine_request_id}
        if record is not None:
            record.model, record.stream = tab.model, bool(parsed.stream)
            bind_request(model=tab.model)
            span = record.start_upstream("engine", {"gen_ai.request.model": tab.model})
            if record.tracing.enabled:
                record.tracing.inject(span, headers)
            else:
                passthrough_traceparent(request.headers, headers)
        assert tab.model is not None
        plan = self._dispatcher.plan(tab.model)
        deadline = Deadline(plan[0].timeouts.total_s)
        affinity = _affinity_key(path, payload, config.affinity_prefix_chars if config is not None else 256)
        try:
            if parsed.stream:
                wants_usage = bool(parsed.stream_options and parsed.stream_options.include_usage)
                forwarded = body if wants_usage else _asking_for_usage(body, parsed.stream_options)
                attempt = await unless_disconnected(
                    request.receive,
                    self._dispatcher.open_stream(path, forwarded, headers, plan, deadline, affinity=affinity),
                )
                _chose(record, attempt.member.name)
                failover = None
                if (config is None or config.failover_enabled) and can_continue(path, payload):
                    failover = Failover(
                        Transcript(path, payload),
                        self._dispatcher,
                        plan=plan,
                        headers=headers,
                        deadline=deadline,
                        affinity=affinity,
                        limit=config.failover_max if config is not None else 2,
                        metrics=self._dispatcher.metrics,
                    )
                return SSERelay(
                    attempt,
                    headers=limit_headers,
                    usage=StreamUsage(
                        forward_usage=wants_usage,
                        transcript=failover.transcript if failover else None,
                        extra=_media_extra(media),
                    ),
                    on_close=lambda outcome, usage: _close_stream(tab, outcome, usage, record),
                    inter_token_s=attempt.target.timeouts.inter_token_s,
                    deadline=deadline,
                    failover=failover,
                )
            answer, member = await unless_disconnected(
                request.receive,
                self._dispatcher.complete(path, body, headers, plan, deadline, affinity=affinity),
            )
            _chose(record, member.name)
        except ClientGone:
            # Nobody is left to read the answer; 499 is what nginx logs for the same case.
            tab.close(status=499, outcome="client_closed", completion_tokens=0)
            return Response(status_code=499)
        except APIError as exc:
            tab.close(status=exc.status, outcome="rejected" if exc.status < 500 else "failed")
            raise
        except BaseException:
            tab.close(status=500, outcome="failed")
            raise
        usage = _usage_of(answer)
        tab.close(status=200, outcome="completed", usage=usage)
        if record is not None and usage is not None:
            record.use(
                prompt_tokens=usage.get("prompt_tokens"), completion_tokens=usage.get("completion_tokens")
            )
        if media is not None:
            answer = with_media_usage(answer, media.usage)
        return Response(answer, media_type="application/json", headers=limit_headers)

    async def _admit(
        self,
        request: Request,
        schema: type[SamplingParams],
        path: str,
        principal: Principal,
        tab: Tab,
        record: RequestRecord | None,
        config: Any,
    ) -> tuple[bytes, SamplingParams, dict[str, Any], Prepared | None]:
        """Read, validate, resolve the model, check the caller may use it and reserve its limits,
        then turn media into what the model takes. Limits come before media work (decoding, OCR,
        transcription: the costly part), so a key over its limits costs the gateway nothing; the
        reservation is from the text before media, and the engine's real counts settle it. Audio
        parts' seconds are reserved apart, once decoded and before they are transcribed. The
        payload returned is the one sent (media turned into text), which a failover continues from."""
        with stage(record, "preprocess"):
            body, parsed, card, payload = await self._preprocess(request, schema, tab, config)
        if record is not None:
            record.model = str(card["id"])
        with stage(record, "rate_limit"):
            await self._reserve(path, parsed, card, principal, tab)
        media = None
        if self._media is not None and isinstance(parsed, ChatCompletionRequest):
            with stage(record, "media"):
                media = await self._media.prepare(
                    payload,
                    self._accepts(str(card["id"]), config),
                    admit_audio=lambda seconds: self._reserve_audio(principal, tab, seconds),
                )
            if media is not None:
                body, parsed = media.body, validate(schema, payload)
                tab.estimate_covers_prompt = False
                tab.media = media.usage
                tab.audio_seconds = float(media.usage.get("audio_seconds") or 0.0)
        return body, parsed, payload, media

    def _accepts(self, model: str, config: Any) -> tuple[Modality, ...]:
        route = config.models.get(model) if config is not None else None
        if route is not None and route.accepts is not None:
            return tuple(route.accepts)
        if config is not None:
            return tuple(config.media_default_accepts)
        return self._default_accepts

    async def _preprocess(
        self, request: Request, schema: type[SamplingParams], tab: Tab, config: Any
    ) -> tuple[bytes, SamplingParams, dict[str, Any], dict[str, Any]]:
        limit = config.max_body_bytes if config is not None else self._max_body_bytes
        body = await read_body(request, limit)
        payload = load_json(body)
        if isinstance(payload, dict) and isinstance(payload.get("model"), str):
            tab.model = payload["model"]
        parsed = validate(schema, payload)
        card = await self._catalog.resolve(parsed.model)
        assert isinstance(payload, dict)  # parse_request accepts objects only
        return body, parsed, card, payload

    async def _reserve(
        self, path: str, parsed: SamplingParams, card: dict[str, Any], principal: Principal, tab: Tab
    ) -> None:
        model = str(card["id"])
        tab.model, tab.stream = model, bool(parsed.stream)
        check_allowed(model, principal)
        max_len = card.get("max_model_len")
        estimate = self._estimator.estimate(
            parsed, path, model, max_len if isinstance(max_len, int) else None
        )
        cost = self._accountant.prices.cost_micros(model, estimate.prompt_tokens, estimate.completion_tokens)
        reservation = await self._accountant.limiter.reserve(principal.scopes(), Demand(estimate.total, cost))
        tab.hold(reservation, estimate)

    async def _reserve_audio(self, principal: Principal, tab: Tab, seconds: float) -> None:
        tab.hold_audio(await self._accountant.limiter.reserve_audio(principal.scopes(), seconds))


def _chose(record: RequestRecord | None, upstream: str) -> None:
    """Name the upstream that answers in the request's logs, access line and span."""
    bind_request(upstream=upstream)
    if record is not None:
        record.upstream = upstream
        if record.upstream_span is not None and record.tracing.enabled:
            record.upstream_span.set_attribute("tantra.upstream", upstream)


def _affinity_key(path: str, payload: dict[str, Any], chars: int) -> str | None:
    """The prompt's first `chars` characters: requests sharing them go to the same replica, whose
    prefix cache already holds that prefix (system prompts, few-shot examples, a conversation)."""
    if chars <= 0:
        return None
    if path == "/v1/chat/completions":
        parts: list[str] = []
        size = 0
        for message in payload.get("messages") or ():
            content = message.get("content") if isinstance(message, dict) else None
            text = content if isinstance(content, str) else orjson.dumps(content).decode()
            parts.append(text)
            size += len(text)
            if size >= chars:
                break
        return "\x1e".join(parts)[:chars] or None
    prompt = payload.get("prompt")
    text = prompt if isinstance(prompt, str) else orjson.dumps(prompt).decode()
    return text[:chars] or None


def _media_extra(media: Prepared | None) -> dict[str, Any] | None:
    return {"tantra_media": media.usage} if media is not None else None


def _close_stream(tab: Tab, outcome: StreamOutcome, usage: StreamUsage, record: RequestRecord | None) -> None:
    status = 499 if outcome == "client_closed" else 200
    tab.close(status=status, outcome=outcome, usage=usage.usage, completion_tokens=usage.completion_tokens)
    if record is None:
        return
    record.outcome = outcome
    if outcome == "failed":
        record.error_type = "server_error"
    if usage.usage is not None:
        record.use(
            prompt_tokens=usage.usage.get("prompt_tokens"),
            completion_tokens=usage.usage.get("completion_tokens"),
        )
    else:
        record.use(
            prompt_tokens=tab.estimate.prompt_tokens if tab.estimate else 0,
            completion_tokens=usage.completion_tokens,
        )


def _asking_for_usage(body: bytes, options: StreamOptions | None) -> bytes:
    """The client's bytes with `stream_options.include_usage` set. The key is appended: JSON
    parsers keep the last of a repeated key, and every other byte stays as the client sent it."""
    wanted: dict[str, Any] = options.model_dump(exclude_none=True) if options is not None else {}
    wanted["include_usage"] = True
    trimmed = body.rstrip()
    return trimmed[:-1] + b',"stream_options":' + orjson.dumps(wanted) + b"}"


def _usage_of(answer: bytes) -> dict[str, Any] | None:
    try:
        usage = orjson.loads(answer).get("usage")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return usage if isinstance(usage, dict) else None
