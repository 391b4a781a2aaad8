"""The settings that bound what one client can make a replica do before it is admitted or refused
(issue 16, points 8 and 9): message and part counts, the rejection budget, the throttling of
failed authentication.

A mixin of `Settings` (gateway/settings/schema.py), kept apart so the schema stays readable; the
fields are read, named and reloaded exactly as the schema's own.
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class AbuseFields(BaseModel):
    """Per-request work bounds and per-client refusal budgets."""

    # Checked on the parsed body before it is validated, so validation and token estimation are
    # bounded by these and not by the body size alone.
    max_messages: int = Field(
        2048, ge=1, description="Most `messages` (or batched prompts) in one request; more get 400."
    )
    max_content_parts: int = Field(
        4096, ge=1, description="Most content parts over all messages of one request; more get 400."
    )
    # The parse itself: bodies above `screen_body_bytes` are parsed first in a worker process, which
    # counts their JSON values (objects, arrays and scalars) against `max_json_nodes`; only a body
    # within it is parsed on the event loop. 512 Ki values hold 2048 messages of 4096 parts, tools
    # with large schemas, a 128k-token prompt of ids and OpenAI's 300k-token embedding batches.
    max_json_nodes: int = Field(
        512 * 1024, ge=1, description="Most JSON values (at any depth) in one request body; more get 400."
    )
    # 1 MiB: a body below it costs the loop at most ~35 ms to parse even when it is all empty arrays
    # (the worst case measured), and it cannot hold more than `max_json_nodes` values anyway.
    screen_body_bytes: int = Field(
        1024 * 1024, ge=0, description="Bodies above this size are screened in a worker first; 0: never."
    )
    # Restart only: the pool is built once, and started on the first large body.
    screen_workers: int = Field(2, ge=1, description="Worker processes that screen large bodies.")
    screen_timeout_s: float = Field(
        10.0, gt=0, description="Most a large body waits for, and in, a screening worker; then 503."
    )
    # Refused requests are counted in Redis (all replicas) per key and per client address; past
    # the budget the rest of the window is answered 429 before the body is read.
    rejection_budget_per_key: int = Field(
        300, ge=0, description="Refused requests (400/403/404/413/429) per key per window; 0: off."
    )
    # Off by default: behind a reverse proxy every client has the proxy's address (until its
    # forwarded address is read), and one client's refusals would then throttle all of them.
    rejection_budget_per_address: int = Field(0, ge=0, description="The same per client address; 0: off.")
    rejection_window_s: float = Field(60.0, gt=0, description="The window of the rejection budgets.")
    # Unknown keys presented from one address; past it, keys not already cached get 429 without a
    # database lookup (keys in the cache still work, so a shared address is not locked out).
    auth_failures_per_address: int = Field(
        30, ge=0, description="Unknown keys one client address may present per window; 0: off."
    )
    auth_failure_window_s: float = Field(60.0, gt=0, description="The window of auth failures.")
    # Restart only: the key cache is built once.
    auth_negative_cache_entries: int = Field(
        10_000, ge=0, description="Unknown key hashes remembered apart from the valid keys' cache."
    )
