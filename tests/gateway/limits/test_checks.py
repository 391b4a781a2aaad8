"""The checks a request is planned into, their Redis keys, and the letters the Lua knows them by."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from gateway.limits.checks import (
    BudgetTerms,
    Check,
    Demand,
    KeySchema,
    Scope,
    ScopeCheck,
    millis,
    period_bounds,
    plan,
    plan_audio,
    plan_session,
)
from gateway.limits.scripts import RESERVE, SETTLE, WIRE, Verdict
from gateway.store import Limits

NOW = datetime(2025, 3, 15, 12, 0, tzinfo=UTC)
KEYS = KeySchema("tantra")


def test_each_check_has_a_letter_of_its_own() -> None:
    assert set(WIRE) == set(Check)
    assert len(set(WIRE.values())) == len(Check)


def test_the_letters_are_those_the_lua_reads() -> None:
    read = set(re.findall(r"kind == '(\w)'", RESERVE + SETTLE)) | set(re.findall(r"-- '(\w)'", RESERVE))
    assert read == set(WIRE.values()) == {"R", "T", "A", "C", "B", "S"}


def test_a_check_is_named_as_errors_and_metrics_name_its_limit() -> None:
    assert [str(check) for check in Check] == [
        "rpm",
        "tpm",
        "audio_spm",
        "concurrency",
        "budget",
        "realtime_sessions",
    ]


def test_verdicts_are_the_reserve_script_statuses() -> None:
    refusals = {int(status) for status in re.findall(r"return \{(-?\d), i", RESERVE)}
    assert "local out = {1, 0, 0, now}" in RESERVE
    assert refusals | {1} == set(Verdict)


def test_key_schema() -> None:
    tenant = Scope("tenant", "t1", Limits(budget_period="day"))
    tag = KEYS.tag([Scope("key", "k1", Limits()), tenant])
    assert tag == "{tenant:t1}"
    base = "tantra:rl:{tenant:t1}:tenant:t1"
    assert KEYS.window(tenant, Check.RPM, tag) == (f"{base}:req",)
    assert KEYS.window(tenant, Check.TPM, tag) == (f"{base}:tok", f"{base}:tokn")
    assert KEYS.window(tenant, Check.AUDIO, tag) == (f"{base}:audio", f"{base}:audion")
    assert KEYS.window(tenant, Check.CONCURRENCY, tag) == (f"{base}:conc",)
    start = datetime(2025, 3, 15, tzinfo=UTC)
    budget = "tantra:budget:{tenant:t1}:tenant:t1"
    assert KEYS.budget(tenant, spend=False, start=start, tag=tag) == f"{budget}:tokens:day:20250315"
    assert KEYS.budget(tenant, spend=True, start=start, tag=tag) == f"{budget}:usd:day:20250315"
    assert KEYS.settled(tag, "m1") == "tantra:settled:{tenant:t1}:m1"
    # Without a tenant, the key's own tag; every key of a request shares one hash slot.
    assert KEYS.tag([Scope("key", "k1", Limits())]) == "{key:k1}"


def test_a_session_holds_a_session_lease_of_its_key_then_the_concurrency_slots() -> None:
    key = Scope("key", "k1", Limits(max_concurrent=2))
    tenant = Scope("tenant", "t1", Limits(max_concurrent=5, rpm=1))
    checks = plan_session([key, tenant], 4, KEYS)
    assert [(c.scope.id, c.kind, c.limit, c.amount) for c in checks] == [
        ("k1", Check.SESSIONS, 4, 1),
        ("k1", Check.CONCURRENCY, 2, 1),
        ("t1", Check.CONCURRENCY, 5, 1),
    ]
    assert checks[0].keys == ("tantra:rl:{tenant:t1}:key:k1:sessions",)
    assert checks[0].settle_value(Demand(0)) == 0
    # Without max_concurrent, the session cap alone.
    assert [c.kind for c in plan_session([Scope("key", "k2", Limits())], 1, KEYS)] == [Check.SESSIONS]


def test_plan_orders_checks_scope_by_scope() -> None:
    key = Scope(
        "key",
        "k1",
        Limits(rpm=10, tpm=1000, audio_spm=60, max_concurrent=2, budget_tokens=5000, budget_usd=1.5),
    )
    tenant = Scope("tenant", "t1", Limits(rpm=100, budget_period="day", budget_usd=2.0))
    checks = plan([key, tenant], Demand(300, cost_micros=42, audio_seconds=9.0), KEYS, NOW)
    assert [(c.scope.id, c.kind, c.limit, c.amount, c.spend) for c in checks] == [
        ("k1", Check.RPM, 10, 1, False),
        ("k1", Check.TPM, 1000, 300, False),
        ("k1", Check.CONCURRENCY, 2, 1, False),
        ("k1", Check.BUDGET, 5000, 300, False),
        ("k1", Check.BUDGET, 1_500_000, 42, True),
        ("t1", Check.RPM, 100, 1, False),
        ("t1", Check.BUDGET, 2_000_000, 42, True),
    ]
    month, day = datetime(2025, 3, 1, tzinfo=UTC), datetime(2025, 3, 15, tzinfo=UTC)
    # A budget counter expires a day after its period ends.
    assert checks[3].budget == BudgetTerms(month, (16 * 24 + 12 + 24) * 3_600_000, spend=False)
    assert checks[4].keys == ("tantra:budget:{tenant:t1}:key:k1:usd:month:20250301",)
    assert {key.split("{")[1].split("}")[0] for c in checks for key in c.keys} == {"tenant:t1"}
    assert checks[6].budget == BudgetTerms(day, (12 + 24) * 3_600_000, spend=True)
    assert all(c.ttl_ms == 0 for c in checks if c.budget is None)


def test_plan_audio_counts_milliseconds_rounded_up() -> None:
    scopes = [Scope("key", "k1", Limits(audio_spm=5)), Scope("tenant", "t1", Limits(rpm=3))]
    (check,) = plan_audio(scopes, Demand(0, audio_seconds=2.0001), KEYS)
    assert (check.kind, check.limit, check.amount) == (Check.AUDIO, 5000, 2001)
    assert plan([Scope("key", "k1", Limits(audio_spm=5))], Demand(10), KEYS, NOW) == ()
    assert millis(-1.0) == 0


def test_settle_values() -> None:
    scope = Scope("key", "k1", Limits())
    used = Demand(7, cost_micros=90, audio_seconds=1.5)

    def check(kind: Check, amount: int, spend: bool = False) -> ScopeCheck:
        return ScopeCheck(kind, scope, 1000, amount, ("k",), BudgetTerms(NOW, 1, spend))

    # Windows take the real amount; budgets move by the difference; a slot is only freed.
    assert check(Check.TPM, 50).settle_value(used) == 7
    assert check(Check.AUDIO, 2000).settle_value(used) == 1500
    assert check(Check.BUDGET, 50).settle_value(used) == -43
    assert check(Check.BUDGET, 40, spend=True).settle_value(used) == 50
    assert check(Check.CONCURRENCY, 1).settle_value(used) == 0


def test_period_bounds() -> None:
    december = datetime(2025, 12, 31, 23, 59, tzinfo=UTC)
    assert period_bounds("month", december) == (
        datetime(2025, 12, 1, tzinfo=UTC),
        datetime(2026, 1, 1, tzinfo=UTC),
    )
    assert period_bounds("day", december) == (
        datetime(2025, 12, 31, tzinfo=UTC),
        datetime(2026, 1, 1, tzinfo=UTC),
    )
