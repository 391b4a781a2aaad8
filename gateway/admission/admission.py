"""One way in for every endpoint: who is calling, a body within its limit, a model the key may use,
limits reserved, and one settlement when the request ends, whatever the endpoint.

    async with admission.enter(request, "/v1/audio/speech") as ticket:
        parsed = await ticket.read_json(SpeechRequest)
        ticket.use_model(model, stream=False)
        await ticket.reserve(Estimate(tokens, 0, tokens))
        ...
        ticket.settle(Outcome.COMPLETED, usage=...)     # or ticket.defer() for a stream

A request refused inside the block (any APIError) or failing there is settled on its way out, with
the limit that refused it named in its record; a stream's settlement is deferred to its last byte.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

from starlette.requests import Request

from gateway.admission.body import check_shape, parse_json, read_request_body, validate
from gateway.admission.gate import Gate
from gateway.admission.internal import ACTING_AS, InternalCall
from gateway.admission.outcome import Outcome
from gateway.admission.screen import BodyScreen
from gateway.auth import Principal
from gateway.errors import APIError, QuotaExceeded, RateLimited, no_such_model
from gateway.http.client_address import client_address, forwarded_user
from gateway.http.disconnect import ClientGone
from gateway.limits import SESSION_SLOT, Demand, Estimate
from gateway.limits.accounting import Accountant, Tab
from gateway.limits.rejection_budget import RejectionBudget
from gateway.observability import RequestRecord, bind_request, record_of
from gateway.protocol.validation import RequestT
from gateway.settings.policy import Policy, PolicySource


class Ticket:
    """One admitted request: what it may do, what it holds, and its one settlement."""

    def __init__(
        self,
        request: Request,
        principal: Principal,
        accountant: Accountant,
        tab: Tab,
        record: RequestRecord | None,
        policy: Policy,
        screen: BodyScreen | None = None,
    ) -> None:
        self.request = request
        self._screen = screen
        self._accountant = accountant
        self.principal = principal
        self.tab = tab
        self.record = record
        # The settings in force when the request arrived, for all of it: a reload mid-stream
        # changes the next request, never this one.
        self.policy = policy
        self.deferred = False
        # Headers the answer carries besides the limits' (a virtual model's choice).
        self.headers: dict[str, str] = {}

    @property
    def settled(self) -> bool:
        return self.tab.closed

    @property
    def limit_headers(self) -> dict[str, str]:
        """The x-ratelimit-* headers of what the request holds, and the request's own `headers`."""
        return {**self.tab.limit_headers, **self.headers} if self.headers else self.tab.limit_headers

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """A child span of the request for one stage of its work (nothing when tracing is off)."""
        with stage(self.record, name):
            yield

    async def read_json(self, schema: type[RequestT]) -> tuple[bytes, dict[str, Any], RequestT]:
        """The body as received, its JSON object, and that object validated against `schema`."""
        policy = self.policy
        body = await read_request_body(self.request, policy.max_body_bytes)
        payload = await parse_json(body, policy, self._screen)
        check_shape(payload, max_messages=policy.max_messages, max_parts=policy.max_content_parts)
        # The ledger names a model only once it is known (use_model): what a client wrote in
        # `model` never reaches a ledger row.
        parsed = validate(schema, payload)
        assert isinstance(payload, dict)  # parse_request accepts objects only
        self.tab.end_user = end_user_of(payload) or self.tab.end_user
        return body, payload, parsed

    def use_model(self, model: str, *, stream: bool) -> None:
        """The model the request is for: 404 `model_not_found` unless the key may use it (OpenAI's
        answer for a model the key cannot see, the same as for a model that does not exist)."""
        self.tab.model, self.tab.stream = model, stream
        if self.record is not None:
            self.record.model, self.record.stream = model, stream
            bind_request(model=model)
        if not self.principal.may_use(model):
            raise no_such_model(model)

    async def reserve(self, estimate: Estimate) -> None:
        """Reserve every limit for `estimate` in one round trip, priced by the dearest model that
        may answer (the request's or a fallback's): a spend budget is not passed by a free model
        whose paid fallback answers. The settlement charges the one that did. A realtime session's
        own call (marked in its ASGI scope by the loopback) runs under the session's slot: no
        concurrency slot of its own, every other limit as usual."""
        prices = self._accountant.prices
        cost = max(
            prices.cost_micros(name, estimate.prompt_tokens, estimate.completion_tokens)
            for name in self.policy.chain(self.tab.model)
        )
        with self.stage("rate_limit"):
            reservation = await self._accountant.limiter.reserve(
                self.principal.scopes(),
                Demand(estimate.total, cost),
                slot=not self.request.scope.get(SESSION_SLOT, False),
            )
        self.tab.hold(reservation, estimate)

    async def reserve_more(self, tokens: int) -> None:
        """Reserve `tokens` more prompt tokens found after admission (text derived from media)
        against the token windows and budgets: 429 if they do not fit."""
        accountant = self._accountant
        cost = accountant.prices.cost_micros(self.tab.model, tokens, 0)
        with self.stage("rate_limit"):
            held = await accountant.limiter.reserve_tokens(self.principal.scopes(), tokens, cost)
        self.tab.hold_extra(held)

    async def reserve_audio(self, seconds: float) -> None:
        """Reserve `seconds` of audio heard, once decoded and before it is transcribed."""
        with self.stage("rate_limit"):
            held = await self._accountant.limiter.reserve_audio(self.principal.scopes(), seconds)
        self.tab.hold_audio(held)

    def defer(self) -> None:
        """The answer streams on after the handler returns; its end settles the request."""
        self.deferred = True

    def settle(
        self,
        outcome: Outcome,
        *,
        status: int | None = None,
        usage: Mapping[str, Any] | None = None,
        completion_tokens: int | None = None,
    ) -> None:
        """Close the request's account (once): the real usage replaces the reservation, a ledger
        row is written, and its record says how it ended and what it used."""
        if self.tab.closed:
            return
        self.close(outcome, status=status, usage=usage, completion_tokens=completion_tokens)
        record = self.record
        if record is None:
            return
        record.outcome = outcome.value
        if outcome is Outcome.FAILED:
            record.error_type = "server_error"
        if usage is not None:
            record.use(
                prompt_tokens=usage.get("prompt_tokens"), completion_tokens=usage.get("completion_tokens")
            )
        elif completion_tokens is not None:
            estimate = self.tab.estimate
            record.use(
                prompt_tokens=estimate.prompt_tokens if estimate else 0, completion_tokens=completion_tokens
            )

    def close(
        self,
        outcome: Outcome,
        *,
        status: int | None = None,
        usage: Mapping[str, Any] | None = None,
        completion_tokens: int | None = None,
    ) -> None:
        """Close the account alone: for a request that ended by an exception, whose record the
        instrumentation fills in from the error response."""
        self.tab.close(
            status=status if status is not None else outcome.status,
            outcome=outcome.value,
            usage=usage,
            completion_tokens=completion_tokens,
        )


class Admission:
    """Built once per gateway and shared by every endpoint."""

    def __init__(
        self,
        gate: Gate,
        accountant: Accountant,
        policy: PolicySource,
        budget: RejectionBudget | None = None,
        screen: BodyScreen | None = None,
    ) -> None:
        self.gate = gate
        # Large bodies are screened in its worker processes before the loop parses them.
        self.screen = screen
        self._accountant = accountant
        self._policy = policy
        self._budget = budget

    @contextlib.asynccontextmanager
    async def enter(self, request: Request, endpoint: str) -> AsyncIterator[Ticket]:
        record = record_of(request.state)
        policy = self._policy.current
        address = client_address(request)
        budget = self._budget
        try:
            if budget is not None:
                budget.check_address(address, policy.rejections_per_address)
            internal = request.scope.get(ACTING_AS)
            with stage(record, "auth"):
                if isinstance(internal, InternalCall):
                    principal = await self.gate.act_as(internal.key_id, record, policy)
                else:
                    principal = await self.gate.identify(request.headers, record, policy, address)
            if budget is not None:
                budget.check_key(principal.key_id, policy.rejections_per_key)
        except RateLimited as exc:
            _rejected_by(record, exc)
            raise
        tab = self._accountant.open(
            tenant_id=principal.tenant_id,
            key_id=principal.key_id,
            endpoint=endpoint,
            request_id=internal.request_id if internal else request.state.unique_request_id,
            client_request_id=request.state.client_request_id,
        )
        if internal:
            tab.price_factor = internal.price_factor
        else:
            tab.end_user = forwarded_user(request)
        ticket = Ticket(request, principal, self._accountant, tab, record, policy, self.screen)
        try:
            yield ticket
        except ClientGone:
            # Nobody is left to read the answer; 499 is what nginx logs for the same case.
            ticket.close(Outcome.CLIENT_CLOSED, completion_tokens=0)
            raise
        except APIError as exc:
            rejected = exc.status < 500
            ticket.close(Outcome.REJECTED if rejected else Outcome.FAILED, status=exc.status)
            _rejected_by(record, exc)
            if budget is not None:
                await budget.count(
                    exc.status,
                    key_id=principal.key_id,
                    address=address,
                    per_key=policy.rejections_per_key,
                    per_address=policy.rejections_per_address,
                )
            raise
        except BaseException:
            ticket.close(Outcome.FAILED)
            raise
        if not ticket.deferred and not ticket.settled:
            ticket.settle(Outcome.COMPLETED)


def _rejected_by(record: RequestRecord | None, exc: APIError) -> None:
    """Name the limit that refused the request in its record (for the metrics)."""
    if record is not None and isinstance(exc, RateLimited | QuotaExceeded):
        record.rejected_by = (exc.limit or "unknown", exc.scope or "unknown")


@contextlib.contextmanager
def stage(record: RequestRecord | None, name: str) -> Iterator[None]:
    """A child span of the request for one stage of its work (nothing when tracing is off)."""
    if record is None or not record.tracing.enabled:
        yield
        return
    with record.child(name):
        yield


def end_user_of(payload: dict[str, Any]) -> str | None:
    """The end user a body names, for the ledger (OpenAI's `user`, or `safety_identifier`, which
    replaces it): GDPR erasure finds a user's billing rows by it."""
    for field in ("user", "safety_identifier"):
        value = payload.get(field)
        if isinstance(value, str) and value:
            return value[:256]
    return None
