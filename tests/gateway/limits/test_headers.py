"""OpenAI's x-ratelimit-* headers and the 429s, built from checks without Redis."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gateway.errors import QuotaExceeded, RateLimited
from gateway.limits.checks import BudgetTerms, Check, Demand, Scope, ScopeCheck
from gateway.limits.headers import admitted_headers, ratelimit_headers, retry_headers, shown
from gateway.limits.rejections import rejection
from gateway.limits.scripts import Verdict
from gateway.store import Limits

NOW = datetime(2025, 3, 15, 12, 0, tzinfo=UTC)
KEY = Scope("key", "k1", Limits(budget_period="day"))
TENANT = Scope("tenant", "t1", Limits())


def check(kind: Check, limit: int, amount: int, scope: Scope = KEY, spend: bool | None = None) -> ScopeCheck:
    budget = BudgetTerms(NOW, 1000, spend) if spend is not None else None
    return ScopeCheck(kind, scope, limit, amount, ("k",), budget)


def test_admitted_headers_show_the_tightest_scope_per_dimension() -> None:
    checks = [
        check(Check.RPM, 100, 1),
        check(Check.TPM, 1000, 10),
        check(Check.CONCURRENCY, 3, 1),  # no headers of its own
        check(Check.RPM, 5, 1, TENANT),
        check(Check.TPM, 5000, 10, TENANT),
        check(Check.AUDIO, 60_000, 2500, TENANT),
    ]
    values = [99, 60_000, 990, 1500, 2, 0, 4, 59_000, 4000, 30_000, 57_500, 120]
    assert admitted_headers(checks, values) == {
        "x-ratelimit-limit-requests": "5",
        "x-ratelimit-remaining-requests": "4",
        "x-ratelimit-reset-requests": "59s",
        "x-ratelimit-limit-tokens": "1000",
        "x-ratelimit-remaining-tokens": "990",
        "x-ratelimit-reset-tokens": "1.5s",
        # Audio is counted in milliseconds and shown in whole seconds.
        "x-ratelimit-limit-audio-seconds": "60",
        "x-ratelimit-remaining-audio-seconds": "57",
        "x-ratelimit-reset-audio-seconds": "120ms",
    }
    assert admitted_headers([check(Check.BUDGET, 10, 1, spend=False)], [9, 1000]) == {}


def test_header_pieces() -> None:
    assert ratelimit_headers("tokens", 10, -3, None) == {
        "x-ratelimit-limit-tokens": "10",
        "x-ratelimit-remaining-tokens": "0",
    }
    assert retry_headers(0) == {"retry-after": "1", "retry-after-ms": "1"}
    assert retry_headers(1500) == {"retry-after": "2", "retry-after-ms": "1500"}
    assert (shown(Check.AUDIO, 2999), shown(Check.TPM, 2999)) == (2, 2999)


def refused(verdict: Verdict, scope_check: ScopeCheck, retry_ms: int = 1500, tokens: int = 10) -> RateLimited:
    error = rejection(verdict, scope_check, retry_ms, Demand(tokens))
    assert isinstance(error, RateLimited)
    assert (error.limit, error.scope) == (scope_check.kind.value, scope_check.scope.kind)
    return error


def test_a_full_window() -> None:
    error = refused(Verdict.OVER_LIMIT, check(Check.TPM, 100, 60, TENANT))
    assert error.type == "tokens"
    assert error.message == (
        "Rate limit reached for tenant t1 on tokens per window: Limit 100, Requested 60. "
        "Please try again in 1.5s."
    )
    assert error.headers == {
        "retry-after": "2",
        "retry-after-ms": "1500",
        "x-ratelimit-limit-tokens": "100",
        "x-ratelimit-remaining-tokens": "0",
        "x-ratelimit-reset-tokens": "1.5s",
    }
    assert refused(Verdict.OVER_LIMIT, check(Check.RPM, 3, 1)).type == "requests"


def test_every_slot_taken() -> None:
    error = refused(Verdict.OVER_LIMIT, check(Check.CONCURRENCY, 2, 1), retry_ms=1000)
    assert error.type == "requests"
    assert error.message == "Too many concurrent requests for key k1: Limit 2. Please try again in 1s."
    assert error.headers == {"retry-after": "1", "retry-after-ms": "1000"}


def test_too_large_to_ever_fit() -> None:
    error = refused(Verdict.TOO_LARGE, check(Check.TPM, 100, 101), tokens=101)
    assert (error.type, error.headers) == ("tokens", {"x-should-retry": "false"})
    assert error.message.startswith("Request too large for key k1 on tokens per window: Limit 100")


def test_audio() -> None:
    over = refused(Verdict.OVER_LIMIT, check(Check.AUDIO, 5000, 3500), retry_ms=2000)
    assert over.type == "audio_seconds"
    assert "Limit 5, Requested 3.5. Please try again in 2s." in over.message
    assert over.headers == {
        "retry-after": "2",
        "retry-after-ms": "2000",
        "x-ratelimit-reset-audio-seconds": "2s",
        "x-ratelimit-limit-audio-seconds": "5",
        "x-ratelimit-remaining-audio-seconds": "0",
    }
    alone = refused(Verdict.TOO_LARGE, check(Check.AUDIO, 5000, 6000))
    assert alone.message.endswith("Limit 5, Requested 6. Send shorter audio.")
    assert alone.headers == {
        "x-should-retry": "false",
        "x-ratelimit-limit-audio-seconds": "5",
        "x-ratelimit-remaining-audio-seconds": "0",
    }


@pytest.mark.parametrize(
    ("spend", "limit", "said"),
    [(False, 1000, "daily tokens budget of 1000"), (True, 1_500_000, "daily spend (USD) budget of 1.5")],
)
def test_a_spent_budget(spend: bool, limit: int, said: str) -> None:
    error = rejection(Verdict.SPENT, check(Check.BUDGET, limit, 40, spend=spend), 5000, Demand(40))
    assert isinstance(error, QuotaExceeded)
    assert (error.limit, error.scope, error.type) == ("budget", "key", "insufficient_quota")
    assert error.message == f"You exceeded your current quota: the {said} for key k1 is used up."
    assert error.headers == {"x-should-retry": "false"}
