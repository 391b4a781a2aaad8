"""What callers may do: limits checked and reserved in Redis, shared by every gateway replica."""

from gateway.limits.estimate import Estimate, TokenEstimator
from gateway.limits.limiter import (
    Demand,
    LimiterStats,
    RateLimiter,
    Reservation,
    Scope,
    format_duration,
    period_bounds,
)
from gateway.limits.pricing import PriceBook

__all__ = [
    "Demand",
    "Estimate",
    "LimiterStats",
    "PriceBook",
    "RateLimiter",
    "Reservation",
    "Scope",
    "TokenEstimator",
    "format_duration",
    "period_bounds",
]
