"""The four clocks of a request: connect, time to first token, gap between tokens, and the whole."""

from __future__ import annotations

import time
from dataclasses import dataclass

from gateway.settings.sections import TimeoutOverride


@dataclass(frozen=True)
class Timeouts:
    connect_s: float
    ttft_s: float
    inter_token_s: float
    total_s: float

    def with_override(self, override: TimeoutOverride | None) -> Timeouts:
        if override is None:
            return self
        return Timeouts(
            connect_s=override.connect_s or self.connect_s,
            ttft_s=override.ttft_s or self.ttft_s,
            inter_token_s=override.inter_token_s or self.inter_token_s,
            total_s=override.total_s or self.total_s,
        )


class Deadline:
    """The request's total deadline, shared by every attempt, retry and failover it makes."""

    def __init__(self, total_s: float) -> None:
        self.at = time.monotonic() + total_s

    def left(self) -> float:
        return self.at - time.monotonic()

    def cap(self, seconds: float) -> float:
        """`seconds`, or less when the whole request's deadline comes first (never below zero)."""
        return max(0.0, min(seconds, self.left()))
