"""/v1/chat/completions and /v1/completions: admit, turn media into what the model takes, and relay
the client's own bytes to an upstream and its answer back."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import orjson
from starlette.requests import Request
from starlette.responses import Response

from adapters.parts import refuse_remote_media
from gateway.admission import Admission, Outcome, Ticket, validate
from gateway.http.disconnect import unless_disconnected
from gateway.http.streaming import after_body
from gateway.limits import TokenEstimator
from gateway.media.service import MediaService, Prepared, as_api_errors, with_media_usage
from gateway.protocol import ChatCompletionRequest
from gateway.protocol.common import SamplingParams
from gateway.services.adapters import AdapterServing
from gateway.services.confidence import ConfidenceAsk, StreamConfidence, complete_json, without_extensions
from gateway.services.forwarding import asking_for_usage, usage_of, with_field
from gateway.services.memory_chat import ChatMemory, annotate
from gateway.services.model_choice import ModelChoice
from gateway.services.moderated import ModeratedChat
from gateway.services.pii import Redactor
from gateway.services.reasoning import ReasoningCounter, StreamReasoning, thinking_fields
from gateway.services.relay import SSERelay, StreamUsage
from gateway.services.self_consistency import SelfConsistency
from gateway.services.spoken import ChatSpeech, Speaking, speech_off, without_speech
from gateway.services.spoken_stream import SpokenStream
from gateway.services.stored_capture import Capture
from gateway.services.stored_completions import StoredCompletions
from gateway.services.upstream_call import chose, upstream_headers
from gateway.upstreams import ModelCatalog
from gateway.upstreams.dispatch import Dispatcher
from gateway.upstreams.stream import UpstreamRequest, UpstreamStream

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class ChatFeatures:
    """What a chat request may go through besides the engine; each None: turned off."""

    media: MediaService | None = None
    # Keeps the chat completions asked to be stored (`store: true`).
    stored: StoredCompletions | None = None
    # Spoken answers (audio output), by the gateway's own text to speech.
    speech: ChatSpeech | None = None
    # The tenants' moderation policies (prompt before the model, answer after it).
    moderated: ModeratedChat | None = None


class InferenceService:
    """Validates a request against OpenAI's schema, then relays the client's own bytes upstream.

    The body is forwarded as received (no re-serialisation), so every parameter, OpenAI's or
    vLLM's, reaches the engine exactly as the client wrote it. The one addition: a stream whose
    client did not ask for usage asks the engine for it, so that the real usage can be settled;
    that usage event is taken out again before the client sees it.
    """

    def __init__(
        self,
        admission: Admission,
        dispatcher: Dispatcher,
        catalog: ModelCatalog,
        estimator: TokenEstimator,
        features: ChatFeatures = ChatFeatures(),
        adapters: AdapterServing | None = None,
    ) -> None:
        self._admission = admission
        self._dispatcher = dispatcher
        self._catalog = catalog
        self._estimator = estimator
        self._media = features.media
        self._stored = features.stored
        self._speech = features.speech
        # Fine-tuned models (`ft:...`), each its tenant's, loaded on demand; None: none served.
        self._adapters = adapters
        self._moderated = features.moderated
        # Chat's reasoning under both its names and counted in usage (services/reasoning.py).
        self._reasoning = ReasoningCounter(dispatcher.pool)
        # Memory in chat (docs/memory.md), set by the composition root once built; None: off.
        self.memory: ChatMemory | None = None
        # Virtual models (`auto`, docs/orchestration.md), set by the composition root; None: none.
        self.chooser: ModelChoice | None = None
        # PII redaction of the prompt under the tenant's policy (docs/governance.md); None: off.
        self.pii: Redactor | None = None
        # Self-consistency virtual models (docs/orchestration.md), set by the composition root.
        self.voting: SelfConsistency | None = None

    def use_adapters(self, adapters: AdapterServing) -> None:
        """Serve the fine-tuned models (built after this service, with the Files API's store)."""
        self._adapters = adapters

    async def handle(self, request: Request, schema: type[SamplingParams], path: str) -> Response:
        async with self._admission.enter(request, path) as ticket:
            body, payload, parsed, media, capture = await self._admit(ticket, schema, path)
            if self.pii is not None:
                body, payload = await self._redacted(ticket, body, payload)
            if self._moderated is None:
                return await self._reply(ticket, path, body, payload, parsed, media, capture)
            # After media: the text derived from images and documents is judged with the prompt.
            screened = await self._moderated.screen_input(ticket, payload, path)
            answer = await self._reply(ticket, path, body, payload, parsed, media, capture)
            return await self._moderated.screen_reply(ticket, screened, answer, path, payload)

    async def _redacted(
        self, ticket: Ticket, body: bytes, payload: dict[str, Any]
    ) -> tuple[bytes, dict[str, Any]]:
        """The body the model is sent: the user's text with its PII replaced when the tenant's
        policy says `prompt` (after media: text read from images and documents too), else as sent."""
        assert self.pii is not None
        with ticket.stage("pii"):
            redacted = await self.pii.prompt(ticket.principal.tenant_id, payload)
        return (body, payload) if redacted is None else (orjson.dumps(redacted), redacted)

    async def _reply(
        self,
        ticket: Ticket,
        path: str,
        body: bytes,
        payload: dict[str, Any],
        parsed: SamplingParams,
        media: Prepared | None,
        capture: Capture | None,
    ) -> Response:
        """The answer, with the end user's memories placed in the prompt when memory is on."""
        memory = self.memory if isinstance(parsed, ChatCompletionRequest) else None
        # The recall's record for the panel, started once the answer is sent (or has failed).
        records: list[Callable[[], Coroutine[Any, Any, None]]] = []
        recall = await memory.recall(ticket, payload, records.append) if memory is not None else None
        asked = payload
        try:
            if recall is not None:
                await ticket.reserve_more(recall.tokens)
                body, payload = recall.body, recall.payload
            if isinstance(parsed, ChatCompletionRequest) and parsed.speaks:
                response = await self._spoken(ticket, path, body, parsed, media, capture)
            else:
                response = await self._answer(ticket, path, body, payload, parsed, media, capture)
        except BaseException:
            if memory is not None:
                for record in records:
                    await memory.start(record)
            raise
        if recall is not None:
            response = annotate(response, recall, json_answer=not parsed.stream)
        if memory is not None:
            # The record's SQL write, the extraction job's submission and its engine work all come
            # after the answer's body, never before its first byte.
            for record in records:
                after_body(response, functools.partial(memory.start, record))
            after_body(response, functools.partial(memory.remember, ticket, asked))
        return response

    async def _admit(
        self, ticket: Ticket, schema: type[SamplingParams], path: str
    ) -> tuple[bytes, dict[str, Any], SamplingParams, Prepared | None, Capture | None]:
        """Read, validate, resolve the model, check the caller may use it and reserve its limits,
        then turn media into what the model takes. Limits come before media work (decoding, OCR,
        transcription: the costly part), so a key over its limits costs the gateway nothing; the
        tokens of the text derived from media are reserved on top once known, and the engine's real
        counts settle both. A request without max_tokens is sent the configured cap it reserved.
        The payload returned is the one sent (media turned into text), which a failover continues
        from."""
        with ticket.stage("preprocess"):
            body, payload, parsed = await ticket.read_json(schema)
            if isinstance(parsed, ChatCompletionRequest) and parsed.speaks and self._speech is None:
                raise speech_off()
            name, body, parsed = await self._virtual(ticket, schema, body, payload, parsed)
            if self._adapters is not None and self._adapters.owns(name):
                card = await self._adapters.resolve(ticket.principal.tenant_id, str(name))
                if card["id"] != name:  # an alias: the engine knows the version it stands for
                    body, payload["model"] = with_field(body, "model", card["id"]), card["id"]
            else:
                card = await self._catalog.resolve(name)
        model = str(card["id"])
        ticket.use_model(model, stream=bool(parsed.stream))
        max_len = card.get("max_model_len")
        max_len = max_len if isinstance(max_len, int) else None
        estimate = self._estimator.estimate(parsed, path, model, max_len)
        await ticket.reserve(estimate)
        # Taken before media parts are turned into text: what is stored is what the client sent.
        capture = self._stored.begin(ticket, payload, parsed) if self._stored is not None else None
        media = None
        if isinstance(parsed, ChatCompletionRequest):
            media = await self._media_of(ticket, payload, model)
        if media is not None:
            tab = ticket.tab
            tab.estimate_covers_prompt = False
            tab.media = media.usage
            tab.audio_seconds = float(media.usage.get("audio_seconds") or 0.0)
            body, parsed = media.body, validate(schema, payload)
            derived = self._estimator.estimate(parsed, path, model, max_len).prompt_tokens
            if derived > estimate.prompt_tokens:
                await ticket.reserve_more(derived - estimate.prompt_tokens)
        if isinstance(parsed, ChatCompletionRequest) and parsed.reasoning_effort is not None:
            for name, value in thinking_fields(payload, ticket.policy.reasoning_budgets(model)).items():
                body, payload[name] = with_field(body, name, value), value
        if (ask := ConfidenceAsk.of(parsed)) is not None:
            for name, value in ask.fields(ticket.policy.confidence_top_logprobs).items():
                body, payload[name] = with_field(body, name, value), value
        if estimate.cap is not None:
            # The engine may generate no more than was reserved.
            field = "max_completion_tokens" if isinstance(parsed, ChatCompletionRequest) else "max_tokens"
            body, payload[field] = with_field(body, field, estimate.cap), estimate.cap
        return body, payload, parsed, media, capture

    async def _virtual(
        self,
        ticket: Ticket,
        schema: type[SamplingParams],
        body: bytes,
        payload: dict[str, Any],
        parsed: SamplingParams,
    ) -> tuple[str | None, bytes, SamplingParams]:
        """The model answering, and the body for it, when `parsed` names a virtual model (the one
        case the client's bytes are re-encoded: they name the model chosen); else as they were."""
        name = parsed.model
        if self.chooser is not None and self.chooser.owns(name):
            name = await self.chooser.choose(ticket, payload)
            return name, orjson.dumps(payload), parsed
        if self.voting is not None and self.voting.owns(name) and schema is ChatCompletionRequest:
            # k samples in one call (or an ensemble's calls): the reservation covers them all;
            # chat only (/v1/completions answers 404, as for any model no engine serves).
            name = self.voting.prepare(ticket, payload)
            return name, orjson.dumps(payload), validate(schema, payload)
        return name, body, parsed

    async def _media_of(self, ticket: Ticket, payload: dict[str, Any], model: str) -> Prepared | None:
        """The chat body with its media turned into what the model takes (None: no media parts)."""
        if self._media is None:
            # Media processing off: parts go on as sent, but never a URL the engine would fetch.
            with as_api_errors():
                refuse_remote_media(payload)
            return None
        with ticket.stage("media"):
            return await self._media.prepare(
                payload,
                ticket.policy.accepts(model),
                admit_audio=ticket.reserve_audio,
                receive=ticket.request.receive,
            )

    async def _spoken(
        self,
        ticket: Ticket,
        path: str,
        body: bytes,
        parsed: ChatCompletionRequest,
        media: Prepared | None,
        capture: Capture | None,
    ) -> Response:
        """A chat answer the gateway speaks (`modalities` with "audio"): the engine is sent the
        body without `modalities` and `audio`, and its text is spoken under this same ticket."""
        assert self._speech is not None  # _admit refused audio output without speech
        if not ticket.principal.may_use(self._speech.model):
            raise speech_off(f"this key may not use the speech model `{self._speech.model}`")
        with as_api_errors():
            speaking = await self._speech.order(parsed, ticket.principal.tenant_id)
        assert speaking is not None
        body = without_speech(body)
        return await self._answer(ticket, path, body, orjson.loads(body), parsed, media, capture, speaking)

    async def _answer(
        self,
        ticket: Ticket,
        path: str,
        body: bytes,
        payload: dict[str, Any],
        parsed: SamplingParams,
        media: Prepared | None,
        capture: Capture | None,
        speaking: Speaking | None = None,
    ) -> Response:
        ask = ConfidenceAsk.of(parsed)
        request = _upstream_request(ticket, path, *without_extensions(body, payload))
        receive = ticket.request.receive
        if (voted := await self._voted(ticket, request, ask)) is not None:
            return voted
        if not parsed.stream:
            answer, upstream, served = await unless_disconnected(
                receive, self._dispatched(ticket, request, self._dispatcher.answer)
            )
            chose(ticket, upstream, served)
            if isinstance(parsed, ChatCompletionRequest):
                answer = await self._reasoning.complete(answer, upstream, served)
                answer = complete_json(answer, ask) if ask is not None else answer
            if capture is not None and self._stored is not None:
                # A spoken answer is kept as its text (the transcript), without the audio.
                self._stored.keep(capture.answered(answer))
            if speaking is not None:
                answer = await self._speak(ticket, speaking, answer)
            ticket.settle(Outcome.COMPLETED, usage=usage_of(answer))
            if media is not None:
                answer = with_media_usage(answer, media.usage)
            return Response(answer, media_type="application/json", headers=ticket.limit_headers)
        wants_usage = bool(parsed.stream_options and parsed.stream_options.include_usage)
        if not wants_usage:
            request = dataclasses.replace(request, body=asking_for_usage(body, parsed.stream_options))
        stream = await unless_disconnected(
            receive, self._dispatched(ticket, request, self._dispatcher.stream)
        )
        chose(ticket, stream.upstream, stream.model)
        usage = StreamUsage(
            forward_usage=wants_usage,
            observe=capture.observer(stream.observe) if capture is not None else stream.observe,
            extra={"tantra_media": media.usage} if media is not None else None,
            reasoning=StreamReasoning() if isinstance(parsed, ChatCompletionRequest) else None,
            confidence=StreamConfidence(ask) if ask is not None else None,
        )
        ticket.defer()

        def close(outcome: Outcome) -> None:
            if speaking is not None and self._speech is not None:
                self._speech.charge(ticket.tab, speaking)
            ticket.settle(outcome, usage=usage.usage, completion_tokens=usage.completion_tokens)

        keep = self._keeper(capture)
        if speaking is not None:
            return self._spoken_stream(stream, usage, speaking, ticket.limit_headers, close, keep)
        return SSERelay(stream, usage=usage, headers=ticket.limit_headers, on_close=close, on_complete=keep)

    def _dispatched(
        self, ticket: Ticket, request: UpstreamRequest, call: Callable[[UpstreamRequest], Awaitable[T]]
    ) -> Awaitable[T]:
        """`call(request)`; for a fine-tuned model, sent once more after a reload when the engine
        no longer held its adapter (evicted between the load and the dispatch)."""
        if self._adapters is None or not self._adapters.owns(request.model):
            return call(request)
        return self._adapters.answering(ticket.principal.tenant_id, request.model, lambda: call(request))

    async def _voted(
        self, ticket: Ticket, request: UpstreamRequest, ask: ConfidenceAsk | None
    ) -> Response | None:
        """The answer of a self-consistency virtual model; None for any other model."""
        plan = self.voting.plan_for(ticket) if self.voting is not None else None
        if plan is None or self.voting is None:
            return None
        return await self.voting.answer(ticket, request, plan, ask)

    async def _speak(self, ticket: Ticket, speaking: Speaking, answer: bytes) -> bytes:
        """The JSON answer with its text spoken (the client leaving stops the synthesis)."""
        speech = self._speech
        assert speech is not None
        try:
            with ticket.stage("speech"), as_api_errors():
                return await unless_disconnected(ticket.request.receive, speech.answer(speaking, answer))
        finally:
            speech.charge(ticket.tab, speaking)

    def _keeper(self, capture: Capture | None) -> Callable[[], None]:
        """What stores a stream that ran to its end (a cut one is not the completion)."""
        stored = self._stored

        def keep() -> None:
            if capture is not None and stored is not None:
                stored.keep(capture.streamed())

        return keep

    def _spoken_stream(
        self,
        stream: UpstreamStream,
        usage: StreamUsage,
        speaking: Speaking,
        headers: dict[str, str],
        on_close: Callable[[Outcome], None],
        keep: Callable[[], None],
    ) -> SpokenStream:
        speech = self._speech
        assert speech is not None
        return SpokenStream(
            stream,
            usage=usage,
            speech=speech,
            speaking=speaking,
            headers=headers,
            on_close=on_close,
            on_complete=keep,
        )


def _upstream_request(ticket: Ticket, path: str, body: bytes, payload: dict[str, Any]) -> UpstreamRequest:
    policy = ticket.policy
    return UpstreamRequest(
        path,
        body,
        payload,
        ticket.tab.model,
        upstream_headers(ticket),
        affinity_chars=policy.affinity_prefix_chars,
        failover_max=policy.failover_max if policy.failover_enabled else 0,
    )
