"""A circuit breaker per upstream, so that a dead replica stops costing every request a timeout."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

BreakerState = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    """closed -> open after `failures` consecutive failures -> half_open once `open_s` has passed
    (one trial request at a time, or a health probe) -> closed on a success, open again on a failure.

    `on_change(state)` is told of every transition (metrics, logs). Time is injectable for tests.
    """

    def __init__(
        self,
        *,
        failures: int,
        open_s: float,
        on_change: Callable[[BreakerState], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold = failures
        self.open_s = open_s
        self.state: BreakerState = "closed"
        self.consecutive_failures = 0
        self.opened_at = float("-inf")
        self.trials = 0
        self.last_failure = ""  # why the last failure counted: logged when the breaker opens
        self._on_change = on_change
        self._clock = clock

    def allows(self) -> bool:
        """Whether a request may go to the upstream now (without taking a trial slot)."""
        if self.state == "closed":
            return True
        if self.state == "open":
            return self.probe_due()
        return self.trials == 0

    def probe_due(self) -> bool:
        return self.state == "open" and self._clock() - self.opened_at >= self.open_s

    def acquire(self) -> None:
        """A request is going to the upstream: an open breaker past its wait becomes half-open."""
        if self.state == "open" and self.probe_due():
            self._move("half_open")
        if self.state == "half_open":
            self.trials += 1

    def release(self) -> None:
        if self.trials:
            self.trials -= 1

    def success(self) -> None:
        self.consecutive_failures = 0
        if self.state != "closed":
            self._move("closed")

    def failure(self, reason: str = "") -> None:
        self.consecutive_failures += 1
        self.last_failure = reason
        if self.state == "half_open" or (
            self.state == "closed" and self.consecutive_failures >= self.threshold
        ):
            self.opened_at = self._clock()
            self._move("open")

    def _move(self, state: BreakerState) -> None:
        self.state = state
        if state != "half_open":
            self.trials = 0
        if self._on_change is not None:
            self._on_change(state)
