"""Settling each request when it ends: the real usage into Redis (replacing the estimate) and into
the ledger, both off the request's path."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from gateway.limits.estimate import Estimate, TokenEstimator
from gateway.limits.limiter import RateLimiter, Reservation
from gateway.limits.pricing import PriceBook
from gateway.store import UsageLedger, UsageRow

_log = logging.getLogger("tantra.limits")
# The ledger's model for a request refused before its model was known (an unknown name, a bad body).
UNKNOWN_MODEL = "(unknown)"


class Accountant:
    def __init__(
        self, limiter: RateLimiter, ledger: UsageLedger, estimator: TokenEstimator, prices: PriceBook
    ) -> None:
        self.limiter = limiter
        self.ledger = ledger
        self.estimator = estimator
        self.prices = prices
        self._settling: set[asyncio.Task[None]] = set()

    def open(
        self,
        *,
        tenant_id: str | None,
        key_id: str | None,
        endpoint: str,
        request_id: str,
        client_request_id: str | None = None,
    ) -> Tab:
        return Tab(
            self,
            tenant_id=tenant_id,
            key_id=key_id,
            endpoint=endpoint,
            request_id=request_id,
            client_request_id=client_request_id,
        )

    def settle_later(
        self, reservation: Reservation, tokens: int, cost_micros: int, audio_seconds: float = 0.0
    ) -> None:
        task = asyncio.get_running_loop().create_task(
            self.limiter.settle(
                reservation, tokens=tokens, cost_micros=cost_micros, audio_seconds=audio_seconds
            )
        )
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)

    async def drain(self) -> None:
        """Wait for settlements under way (at shutdown, and in tests)."""
        while self._settling:
            with contextlib.suppress(Exception):
                await asyncio.gather(*list(self._settling), return_exceptions=True)


class Tab:
    """One request's account, from authentication to its last byte; closed exactly once."""

    def __init__(
        self,
        accountant: Accountant,
        *,
        tenant_id: str | None,
        key_id: str | None,
        endpoint: str,
        request_id: str,
        client_request_id: str | None = None,
    ) -> None:
        self._accountant = accountant
        self.tenant_id = tenant_id
        self.key_id = key_id
        self.endpoint = endpoint
        # The gateway's own id (unique: the ledger's key) and the client's x-request-id, if any.
        self.request_id = request_id
        self.client_request_id = client_request_id
        # The end user the body named (`user`, `safety_identifier`), for GDPR erasure by user.
        self.end_user: str | None = None
        # The model asked for, and the one that answered (a fallback's): the answer is priced by it.
        self.model = ""
        self.served_model: str | None = None
        self.stream = False
        self.estimate: Estimate | None = None
        self.reservation: Reservation | None = None
        # Audio seconds are reserved apart, once the audio is decoded (RateLimiter.reserve_audio):
        # a chat request's audio parts together, then each video's soundtrack.
        self.audio_reservations: list[Reservation] = []
        # Tokens reserved on top once known (text derived from media): settled at zero, since the
        # real usage settles the first reservation.
        self.extra_reservations: list[Reservation] = []
        # What the request heard (settles the audio reservation), and its media's usage, if any.
        self.audio_seconds = 0.0
        self.media: dict[str, Any] | None = None
        # A chat answer the gateway spoke (audio output): its text's tokens (four characters to a
        # token, as /v1/audio/speech counts them), priced as the speech model's prompt tokens.
        self.speech_model: str | None = None
        self.spoken_tokens = 0
        # False when the prompt grew after the estimate (media turned into text): the estimator
        # must not learn from that pair.
        self.estimate_covers_prompt = True
        # What the ledger's cost is multiplied by: a batch line's discount (TANTRA_BATCH_PRICE_FACTOR).
        self.price_factor = 1.0
        self._started = time.monotonic()
        self._wall_start = time.time()
        self.closed = False

    def hold(self, reservation: Reservation, estimate: Estimate) -> None:
        self.reservation = reservation
        self.estimate = estimate

    def hold_audio(self, reservation: Reservation) -> None:
        self.audio_reservations.append(reservation)

    def hold_extra(self, reservation: Reservation) -> None:
        self.extra_reservations.append(reservation)

    @property
    def limit_headers(self) -> dict[str, str]:
        """The x-ratelimit-* headers of what the request holds."""
        headers: dict[str, str] = {}
        for reservation in (self.reservation, *self.extra_reservations, *self.audio_reservations):
            if reservation is not None:
                headers.update(reservation.headers)  # the latest audio reservation's are the newest
        return headers

    def close(
        self,
        *,
        status: int,
        outcome: str,
        usage: Mapping[str, Any] | None = None,
        completion_tokens: int | None = None,
    ) -> None:
        if self.closed:
            return
        self.closed = True
        accountant = self._accountant
        prompt, completion = self._tokens(usage, completion_tokens)
        self._observe(usage)
        cost = accountant.prices.cost_micros(self.served_model or self.model, prompt, completion)
        if self.speech_model is not None:
            cost += accountant.prices.cost_micros(self.speech_model, self.spoken_tokens, 0)
        if self.price_factor != 1.0:
            cost = round(cost * self.price_factor)
        if self.reservation is not None:
            accountant.settle_later(self.reservation, prompt + completion, cost)
        for extra in self.extra_reservations:
            accountant.settle_later(extra, 0, 0)
        for held in self.audio_reservations:
            # What was reserved was decoded audio: heard in full when the request heard its audio
            # (`audio_seconds` set), else not at all (refused or failed before whisper's answer).
            heard = held.demand.audio_seconds if self.audio_seconds else 0.0
            accountant.settle_later(held, 0, 0, heard)
        admitted = self.reservation.admitted_at if self.reservation is not None else self._wall_start
        try:
            accountant.ledger.record(
                UsageRow(
                    created_at=datetime.fromtimestamp(admitted, UTC).replace(tzinfo=None),
                    request_id=self.request_id,
                    tenant_id=self.tenant_id,
                    key_id=self.key_id,
                    model=(self.model or UNKNOWN_MODEL)[:200],
                    served_model=self.served_model,
                    client_request_id=self.client_request_id,
                    end_user=self.end_user,
                    endpoint=self.endpoint,
                    stream=self.stream,
                    prompt_tokens=prompt,
                    completion_tokens=completion,
                    cost_micros=cost,
                    latency_ms=round((time.monotonic() - self._started) * 1000),
                    status=status,
                    outcome=outcome,
                    audio_seconds=round(self.audio_seconds, 3) if self.audio_seconds else None,
                    media=self.media,
                )
            )
        except Exception:  # the ledger must never fail a request
            _log.exception("usage ledger: could not record request %s", self.request_id)

    def _observe(self, usage: Mapping[str, Any] | None) -> None:
        """Teach the estimator the engine's count for the prompt it estimated: only when the
        request's own model counted it (a fallback's tokenizer is another's)."""
        if (
            usage is not None
            and self.estimate is not None
            and self.estimate_covers_prompt
            and self.served_model in (None, self.model)
            and isinstance(usage.get("prompt_tokens"), int)
        ):
            self._accountant.estimator.observe(
                self.endpoint, self.model, self.estimate, int(usage["prompt_tokens"])
            )

    def _tokens(self, usage: Mapping[str, Any] | None, counted: int | None) -> tuple[int, int]:
        """The engine's own counts when it gave them; otherwise the prompt as estimated (the engine
        read it) and the completion tokens counted on the way, for a request that reached the engine."""
        if usage is not None:
            return _int(usage.get("prompt_tokens")), _int(usage.get("completion_tokens"))
        if counted is None or self.estimate is None:
            return 0, 0
        return self.estimate.prompt_tokens, counted


def _int(value: Any) -> int:
    return int(value) if isinstance(value, int | float) else 0
