"""Memory compression (docs/memory.md): a scheduled job of the job runner (`memory-compress`, one per
interval, as retention's) that removes expired memories, and brings every end user over the budget
(TANTRA_MEMORY_COMPRESS_MAX_PER_USER) back under it:

1. exact duplicates (the same text in the same scope) collapse into the oldest, without a model call;
2. then the oldest memories of one scope are merged, a batch at a time, into one memory summarised
   by a served chat model with a JSON-schema `response_format` (`{"summary": string}`), asked as the
   key that made the newest of them (its tokens are in that key's ledger).

Every memory merged away keeps its history: a `MERGE` event whose `new_memory` is the text it went
into and whose metadata names it (`merged_into`); the summary's `ADD` event lists what it was made of
(`merged_from`, and the merged texts as its `input`). The history's shape is mem0's.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy.exc import IntegrityError

from gateway.errors import APIError
from gateway.jobs import Job, JobOptions, JobRunner
from gateway.memory.index import from_bytes
from gateway.protocol.memory import MAX_MEMORY_CHARS
from gateway.services.memory_core import Caller, MemoryCore, new_memory_id
from gateway.store import utcnow
from gateway.store.memories import Change, Memory, Scope
from gateway.store.owned import Owner

log = logging.getLogger("tantra.memory")
KIND = "memory-compress"
# Rounds of merging one user may get per run (a run is bounded; the next one goes on).
_MAX_ROUNDS = 20

SUMMARY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"summary": {"type": "string", "minLength": 1, "maxLength": 2000}},
    "required": ["summary"],
    "additionalProperties": False,
}
SUMMARY_PROMPT = (
    "Merge the remembered facts below about one user into one short paragraph that keeps every "
    'distinct fact and drops repetition. Answer with JSON: {"summary": "..."}.'
)


@dataclass(frozen=True)
class CompressOptions:
    model: str
    max_per_user: int = 1000
    batch: int = 20
    interval_s: float = 3600.0
    max_tokens: int = 512


class MemoryCompression:
    def __init__(
        self,
        core: MemoryCore,
        runner: JobRunner,
        options: CompressOptions,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.core = core
        self._runner = runner
        self.options = options
        self.clock = clock

    def register(self) -> None:
        self._runner.register(KIND, self.handle, priority=-4, concurrency=1)

    async def schedule(self, after: datetime | None = None) -> None:
        """Submit the job of the interval holding `after` (default: now), unless it exists."""
        at = after or self.clock()
        slot = int((at - datetime(1970, 1, 1)).total_seconds() // self.options.interval_s)
        job_id = f"{KIND}-{slot}"
        if await self._runner.get(job_id) is not None:
            return
        run_after = datetime(1970, 1, 1) + timedelta(seconds=slot * self.options.interval_s)
        with contextlib.suppress(IntegrityError):  # another replica submitted this slot first
            await self._runner.submit(KIND, None, {}, options=JobOptions(run_after=run_after, job_id=job_id))

    async def handle(self, job: Job) -> dict[str, Any]:
        counts = await self.run(job=job)
        await self.schedule(self.clock() + timedelta(seconds=self.options.interval_s))
        await self._forget_old_runs(keep=job.id)
        return counts

    async def _forget_old_runs(self, keep: str) -> None:
        """The rows of this kind's runs that ended over a day ago (one an interval would pile up)."""
        before = self.clock() - timedelta(days=1)
        for status in ("completed", "failed"):
            for record in await self._runner.queue.list(kind=KIND, status=status, limit=100):
                if record.id != keep and record.finished_at is not None and record.finished_at < before:
                    await self._runner.queue.delete(record.id)

    async def run(self, *, job: Job | None = None) -> dict[str, int]:
        counts = {"expired": await self.expire(), "duplicates": 0, "merged": 0, "summaries": 0}
        for tenant_id, user, _ in await self.core.store.over_budget(self.options.max_per_user):
            if job is not None:
                job.check()
            done = await self.compress_user(tenant_id, user)
            for name, n in done.items():
                counts[name] += n
        log.info("memory compression: %s", counts)
        return counts

    async def expire(self) -> int:
        removed = 0
        while expired := await self.core.store.expired(self.clock()):
            by_tenant: dict[str | None, list[Memory]] = {}
            for memory in expired:
                by_tenant.setdefault(memory.tenant_id, []).append(memory)
            for tenant_id, memories in by_tenant.items():
                await self.core.delete(Owner(tenant_id), memories)
            removed += len(expired)
        return removed

    async def compress_user(self, tenant_id: str | None, user: str) -> dict[str, int]:
        owner = Owner(tenant_id)
        memories = await self.core.store.in_scope(owner, Scope(user_id=user))
        duplicates = await self._collapse(owner, memories)
        gone = {m.id for m in duplicates}
        memories = [m for m in memories if m.id not in gone]
        counts = {"duplicates": len(duplicates), "merged": 0, "summaries": 0}
        for _ in range(_MAX_ROUNDS):
            over = len(memories) - self.options.max_per_user
            if over <= 0:
                break
            oldest = memories[0].scope
            batch = [m for m in memories if m.scope == oldest][: min(self.options.batch, over + 1)]
            if len(batch) < 2 or not await self._merge(tenant_id, batch):
                break
            merged = {m.id for m in batch}
            memories = [m for m in memories if m.id not in merged]
            counts["merged"] += len(batch)
            counts["summaries"] += 1
        return counts

    async def _collapse(self, owner: Owner, memories: Sequence[Memory]) -> list[Memory]:
        """Every later copy of a text already held by the same scope merges into the first."""
        first: dict[tuple[Any, ...], Memory] = {}
        changes: list[Change] = []
        removed: list[Memory] = []
        for memory in memories:
            key = (tuple(memory.scope.ids().items()), memory.hash)
            kept = first.setdefault(key, memory)
            if kept is memory:
                continue
            changes.append(
                Change(
                    "MERGE", memory.id, new_memory_id(), text=kept.memory, metadata={"merged_into": kept.id}
                )
            )
            removed.append(memory)
        if changes:
            await self.core.store.apply(owner, changes, at=self.clock())
            await self._forget(owner.tenant_id, removed)
        return removed

    async def _merge(self, tenant_id: str | None, batch: Sequence[Memory]) -> bool:
        """One summary of `batch` in its place; False when the model gave none (nothing changes)."""
        newest = max(batch, key=lambda m: m.updated_at)
        caller = Caller(Owner(tenant_id, newest.created_by), f"{KIND}-{new_memory_id()}")
        try:
            summary = await self._summarise(caller, [m.memory for m in batch])
        except APIError as exc:
            log.warning("memory compression: no summary (%s): %s", exc.status, exc.message)
            return False
        if not summary:
            return False
        (vector,) = await self.core.embed(caller, [summary])
        summary_id = new_memory_id()
        metadata = {**newest.metadata, "merged_from": [m.id for m in batch]}
        add = Change(
            "ADD",
            summary_id,
            new_memory_id(),
            text=summary,
            vector=vector.tobytes(),
            metadata=metadata,
            scope=batch[0].scope,
            input=[{"role": "user", "content": m.memory} for m in batch],
        )
        merges = [
            Change("MERGE", m.id, new_memory_id(), text=summary, metadata={"merged_into": summary_id})
            for m in batch
        ]
        written = await self.core.store.apply(caller.owner, [add, *merges], at=self.clock())
        created = written[0]
        assert created is not None
        await self._forget(tenant_id, batch)
        await self.core.index.add(tenant_id, {created.seq: from_bytes(created.vector)})
        if self.core.graph is not None:
            await self.core.graph_remember(caller, [created])
        return True

    async def _summarise(self, caller: Caller, texts: Sequence[str]) -> str:
        body = {
            "model": self.options.model,
            "messages": [
                {"role": "system", "content": SUMMARY_PROMPT},
                {"role": "user", "content": "\n".join(f"- {text}" for text in texts)},
            ],
            "max_tokens": self.options.max_tokens,
            "temperature": 0,
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "summary", "schema": SUMMARY_SCHEMA, "strict": True},
            },
        }
        return parse_summary(await self.core.post(caller, "/v1/chat/completions", body))

    async def _forget(self, tenant_id: str | None, memories: Sequence[Memory]) -> None:
        await self.core.index.remove(tenant_id, [m.seq for m in memories])
        if self.core.graph is not None:
            await self.core.graph.store.forget(tenant_id, [m.id for m in memories])


def parse_summary(answer: dict[str, Any]) -> str:
    """A summary answer's text; anything malformed or empty counts as none."""
    try:
        summary = orjson.loads(answer["choices"][0]["message"]["content"])["summary"]
    except (KeyError, IndexError, TypeError, orjson.JSONDecodeError):
        return ""
    return summary.strip()[:MAX_MEMORY_CHARS] if isinstance(summary, str) else ""
