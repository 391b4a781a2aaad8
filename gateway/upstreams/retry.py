"""Retries before the first byte: which failures are worth another try, how long to wait, and a
budget so that retries cannot multiply the load on an upstream that is already failing."""

from __future__ import annotations

import collections
import random
import time
from collections.abc import Callable

from tenacity import RetryCallState

from gateway.errors import APIError, EngineTimeout, EngineUnavailable


class UpstreamFailed(Exception):
    """One attempt failed before anything reached the client; `error` is what the client would see."""

    def __init__(self, error: APIError, *, upstream: str, retry_after_s: float | None = None) -> None:
        super().__init__(error.message)
        self.error = error
        self.upstream = upstream
        self.retry_after_s = retry_after_s

    @property
    def retryable(self) -> bool:
        """Connection refused or reset, timeouts, 5xx and 429 may succeed elsewhere or later;
        a 4xx is the client's mistake and would fail the same way everywhere."""
        error = self.error
        if isinstance(error, EngineUnavailable | EngineTimeout):
            return True
        return error.status >= 500 or error.status == 429

    @property
    def counts_against_upstream(self) -> bool:
        """Whether the upstream's breaker should hear of it: a busy (429) upstream is not broken."""
        return self.retryable and self.error.status != 429


class RetryBudget:
    """Retries may be at most `ratio` of the requests seen in the last `window_s` (plus `minimum`),
    the gRPC/Finagle rule: in an outage every request fails, and without a budget each would
    bring `attempts` times its load to the upstreams that remain."""

    def __init__(
        self, *, ratio: float, window_s: float, minimum: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ratio = ratio
        self.window_s = window_s
        self.minimum = minimum
        self._clock = clock
        self._requests: collections.deque[float] = collections.deque()
        self._retries: collections.deque[float] = collections.deque()

    def request(self) -> None:
        self._requests.append(self._clock())

    def try_spend(self) -> bool:
        """Take one retry from the budget, or False when the window has none left."""
        now = self._clock()
        for stamps in (self._requests, self._retries):
            while stamps and now - stamps[0] > self.window_s:
                stamps.popleft()
        if len(self._retries) >= self.minimum + self.ratio * len(self._requests):
            return False
        self._retries.append(now)
        return True


class BackoffWait:
    """Exponential backoff with jitter (tenacity's `wait_exponential_jitter` formula), stretched to
    an upstream's Retry-After and capped at `max_s`. `first_attempt` numbers tenacity's first
    attempt when the dispatcher made one before handing over to tenacity."""

    def __init__(self, initial_s: float, max_s: float, *, first_attempt: int = 1) -> None:
        self.initial_s = initial_s
        self.max_s = max_s
        self._offset = first_attempt - 1

    def seconds(self, failed_attempt: int, retry_after_s: float | None) -> float:
        """The wait after attempt number `failed_attempt` (1-based) failed."""
        wait = self.initial_s * 2 ** (failed_attempt - 1) + random.uniform(0, self.initial_s)
        if retry_after_s is not None:
            wait = max(wait, retry_after_s)
        return min(wait, self.max_s)

    def __call__(self, state: RetryCallState) -> float:
        failure = _failure_of(state)
        return self.seconds(state.attempt_number + self._offset, failure.retry_after_s if failure else None)


def _failure_of(state: RetryCallState) -> UpstreamFailed | None:
    outcome = state.outcome
    if outcome is None or not outcome.failed:
        return None
    exc = outcome.exception()
    return exc if isinstance(exc, UpstreamFailed) else None
