"""Ledger rows and limiter seeds for the security tests that write the store or Redis directly."""

from __future__ import annotations

from datetime import UTC, datetime

from gateway.store import UsageRow


def usage_row(request_id: str, model: str = "m") -> UsageRow:
    """A one-token completed chat row, as the ledger records it."""
    return UsageRow(
        created_at=datetime.now(UTC).replace(tzinfo=None),
        request_id=request_id,
        tenant_id=None,
        key_id=None,
        model=model,
        endpoint="/v1/chat/completions",
        stream=False,
        prompt_tokens=1,
        completion_tokens=1,
        cost_micros=0,
        latency_ms=1,
        status=200,
        outcome="completed",
    )


async def no_ledger(kind: str, scope_id: str, since: datetime) -> tuple[int, int]:
    """A budget seed for limiters whose tests spend no budget."""
    return 0, 0
