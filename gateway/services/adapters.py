"""Fine-tuned models served as vLLM LoRA adapters (issue 20, point 3; docs/fine-tuning.md).

A succeeded job's model (`ft:<base>:<tenant>:<suffix>:<id>`) is its tenant's only: another tenant
resolving it gets OpenAI's 404, and `/v1/models` lists it to its tenant alone. On a request for it,
the adapter is loaded (vLLM's runtime loading) into a replica that serves its base: one already
holding it if any, else the one holding the fewest; a replica at its slot limit
(TANTRA_FINE_TUNING_MAX_LORAS) first unloads its least recently used adapter. The adapter's files
are unpacked from the blob store into the work directory the engines read.

The engines are the truth of what is loaded where: each replica's `/v1/models` answer (kept by the
pool, `Member.cards`) lists its adapters with their `parent`, so every gateway replica sees what any
of them loaded, after a restart too. This replica's own loads and unloads edit those cards at once
(the pool then routes the model there before the next list). Recency is each gateway replica's own:
adapters an engine holds that this replica has not used count as least recently used. A miss
re-reads the lists once before loading (another gateway may just have loaded it), and a request
whose adapter was evicted between its load and its dispatch (the engine's 404) is reloaded and sent
once more (`answering`).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from gateway.blobs import BlobStore
from gateway.errors import EngineUnavailable, ModelNotFound, no_such_model
from gateway.services.stored import unix
from gateway.store.fine_tuning import FineTuningJobRow, FineTuningStore
from gateway.store.owned import Owner
from gateway.upstreams.pool import Member, UpstreamPool
from gateway.upstreams.vllm import AdapterCallFailed, VllmUpstream, load_lora, unload_lora

PREFIX = "ft:"
# (tenant, name) -> the full model name an alias stands for, or None.
Aliases = Callable[[str | None, str], Awaitable[str | None]]
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
_LIST_TIMEOUT_S = 10.0
T = TypeVar("T")


def listed_adapters(cards: Iterable[dict[str, Any]]) -> list[str]:
    """The fine-tuned models among an engine's /v1/models cards, in its order: vLLM lists a LoRA
    adapter with its base as `parent` (a base model's card has none). Adapters not named `ft:...`
    (an operator's, the bench's) are not the gateway's to count or evict."""
    return [
        str(card["id"])
        for card in cards
        if isinstance(card.get("parent"), str)
        and card["parent"] != card.get("id")
        and str(card.get("id", "")).startswith(PREFIX)
    ]


@dataclass
class AdapterCounts:
    """What this gateway replica asked of the engines (read by tests and the admin's debugging)."""

    loads: int = 0
    unloads: int = 0
    reloads: int = 0  # requests sent again after the engine's 404 (evicted before dispatch)


class AdapterServing:
    def __init__(
        self, store: FineTuningStore, blobs: BlobStore, pool: UpstreamPool, work_dir: Path, slots: int
    ) -> None:
        self._store = store
        self._blobs = blobs
        self._pool = pool
        self._work_dir = work_dir
        self._slots = slots
        # Per replica, the adapters this gateway replica used, from least to most recently.
        self._used: dict[str, collections.OrderedDict[str, None]] = collections.defaultdict(
            collections.OrderedDict
        )
        self._lock = asyncio.Lock()
        self._aliases: Aliases | None = None
        self.counts = AdapterCounts()

    @staticmethod
    def owns(model: str | None) -> bool:
        return model is not None and model.startswith(PREFIX)

    def held(self, member: str) -> list[str]:
        """The adapters the replica's last model list (and this gateway's own loads since) shows,
        least recently used first: those this gateway never used, then its own use's order."""
        found = self._pool.members.get(member)
        listed = listed_adapters(found.cards) if found is not None else []
        used = self._used[member]
        for gone in [name for name in used if name not in listed]:
            del used[gone]
        return [name for name in listed if name not in used] + list(used)

    def use_aliases(self, aliases: Aliases) -> None:
        """Names that stand for one of the tenant's versions (the learning loop's
        `ft:<base>:<tenant>:<suffix>`, gateway/services/learning_loop.py)."""
        self._aliases = aliases

    async def _find(self, tenant_id: str | None, model: str) -> FineTuningJobRow | None:
        row = await self._store.model(Owner(tenant_id), model)
        if row is None and self._aliases is not None:
            target = await self._aliases(tenant_id, model)
            row = await self._store.model(Owner(tenant_id), target) if target else None
        return row

    async def resolve(self, tenant_id: str | None, model: str) -> dict[str, Any]:
        """The model's card once its adapter is loaded on a replica serving its base; 404 for a
        model that is not the tenant's (or was deleted). An alias answers as the version it names."""
        row = await self._find(tenant_id, model)
        if row is None or row.fine_tuned_model is None:
            raise no_such_model(model)
        name = row.fine_tuned_model
        base_card = await self._ensure_loaded(row, name)
        return card(row, name, base_card)

    async def answering(self, tenant_id: str | None, model: str, call: Callable[[], Awaitable[T]]) -> T:
        """`call` (the dispatch of a request for the resolved `model`), sent once more after the
        adapter is loaded again when the engine answered 404 for it: another request, or another
        gateway replica, evicted it between this request's load and its dispatch."""
        try:
            return await call()
        except ModelNotFound:
            if not self.owns(model):
                raise
            # The engines' lists say where it is now (nowhere, or on another replica).
            await self._read_lists()
            await self.resolve(tenant_id, model)
            self.counts.reloads += 1
            return await call()

    async def cards(self, tenant_id: str | None) -> list[dict[str, Any]]:
        """The tenant's fine-tuned models for /v1/models (loaded or not)."""
        return [
            card(row, row.fine_tuned_model or "", {}) for row in await self._store.models(Owner(tenant_id))
        ]

    async def card_for(self, tenant_id: str | None, model: str) -> dict[str, Any] | None:
        row = await self._find(tenant_id, model)
        return None if row is None else card(row, model, {})

    async def delete(self, tenant_id: str | None, model: str) -> bool:
        """Unload the model everywhere, delete its adapter's blobs and mark it deleted (its job
        stays, naming the model, as OpenAI keeps it)."""
        row = await self._store.model(Owner(tenant_id), model)
        if row is None:
            return False
        await self._read_lists()
        async with self._lock:
            for member in self._pool.members.values():
                if model in self.held(member.name):
                    await self._unload(member, model)
        for name in ADAPTER_FILES:
            await self._blobs.delete(f"{row.adapter_key}{name}")
        await self._store.forget_model(row.id)
        return True

    async def _ensure_loaded(self, row: FineTuningJobRow, model: str) -> dict[str, Any]:
        async with self._lock:
            member = self._holder(row.model, model)
            if member is None:
                # Not seen on any replica (or no model list read yet: a fresh gateway replica):
                # another gateway replica may just have loaded it.
                await self._read_lists()
                member = self._holder(row.model, model)
            if member is None:
                member = await self._load(row, model)
            used = self._used[member.name]
            used[model] = None
            used.move_to_end(model)
            base = next((c for c in member.cards if c.get("id") == row.model), {})
            return dict(base)

    async def _read_lists(self) -> None:
        # No engine answering is not an error here: the replicas serving the base decide after.
        with contextlib.suppress(EngineUnavailable):
            await self._pool.list_models(_LIST_TIMEOUT_S)

    def _holder(self, base: str, model: str) -> Member | None:
        """The least busy replica serving `base` whose list holds `model`, if any."""
        holding = [m for m in self._bases(base) if model in listed_adapters(m.cards)]
        return min(holding, key=lambda m: m.outstanding) if holding else None

    async def _load(self, row: FineTuningJobRow, model: str) -> Member:
        members = self._bases(row.model)
        if not members:
            raise EngineUnavailable(f"No replica serving {row.model} is available for {model}.")
        member = min(members, key=lambda m: (len(self.held(m.name)), m.outstanding))
        while len(held := self.held(member.name)) >= self._slots:
            await self._unload(member, held[0])
        path = await self._unpack(row)
        assert isinstance(member.upstream, VllmUpstream)
        try:
            await load_lora(member.upstream, model, str(path))
        except AdapterCallFailed as exc:
            raise EngineUnavailable(f"The engine could not load {model}: {exc}") from exc
        self.counts.loads += 1
        # As the engine's next list will show it: the pool routes the model there at once.
        adapter = {"id": model, "object": "model", "root": str(path), "parent": row.model}
        member.cards = (*(c for c in member.cards if c.get("id") != model), adapter)
        member.served = member.served | {model}
        return member

    def _bases(self, base: str) -> list[Member]:
        return [
            member
            for member in self._pool.members.values()
            if isinstance(member.upstream, VllmUpstream) and base in member.served
        ]

    async def _unload(self, member: Member, model: str) -> None:
        assert isinstance(member.upstream, VllmUpstream)
        try:
            await unload_lora(member.upstream, model)
            self.counts.unloads += 1
        finally:
            self._used[member.name].pop(model, None)
            member.cards = tuple(c for c in member.cards if c.get("id") != model)
            member.served = member.served - {model}

    async def _unpack(self, row: FineTuningJobRow) -> Path:
        """The adapter's files in the work directory (from the blob store, once per replica)."""
        directory = (self._work_dir / "adapters" / row.id).absolute()
        if all((directory / name).is_file() for name in ADAPTER_FILES):
            return directory
        directory.mkdir(parents=True, exist_ok=True)
        for name in ADAPTER_FILES:
            part = directory / (name + ".part")
            with part.open("wb") as out:
                async for chunk in self._blobs.get(f"{row.adapter_key}{name}"):
                    out.write(chunk)
            part.rename(directory / name)
        return directory


def card(row: FineTuningJobRow, model: str, base: dict[str, Any]) -> dict[str, Any]:
    created = unix(row.finished_at) or 0
    found: dict[str, Any] = {
        "id": model,
        "object": "model",
        "created": created,
        "owned_by": row.tenant_id or "anonymous",
        "root": row.model,
        "parent": row.model,
    }
    if isinstance(base.get("max_model_len"), int):
        found["max_model_len"] = base["max_model_len"]
    return found
