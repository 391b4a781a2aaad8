"""What callers may do: limits checked and reserved in Redis, shared by every gateway replica."""

from gateway.limits.checks import Demand, Scope, ScopeKind, period_bounds
from gateway.limits.estimate import Estimate, TokenEstimator
from gateway.limits.headers import format_duration
from gateway.limits.leases import SESSION_SLOT
from gateway.limits.limiter import LimiterStats, RateLimiter, Reservation
from gateway.limits.pricing import PriceBook

__all__ = [
    "SESSION_SLOT",
    "Demand",
    "Estimate",
    "LimiterStats",
    "PriceBook",
    "RateLimiter",
    "Reservation",
    "Scope",
    "ScopeKind",
    "TokenEstimator",
    "format_duration",
    "period_bounds",
]
