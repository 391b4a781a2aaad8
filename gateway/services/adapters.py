"""Fine-tuned models served as vLLM LoRA adapters (issue 20, point 3; docs/fine-tuning.md).

A succeeded job's model (`ft:<base>:<tenant>:<suffix>:<id>`) is its tenant's only: another tenant
resolving it gets OpenAI's 404, and `/v1/models` lists it to its tenant alone. On a request for it,
the adapter is loaded (vLLM's runtime loading) into a replica that serves its base: one already
holding it if any, else the one holding the fewest; a replica at its slot limit
(TANTRA_FINE_TUNING_MAX_LORAS) first unloads its least recently used adapter. The adapter's files
are unpacked from the blob store into the work directory the engines read.

The gateway keeps the replicas' adapter sets in memory; the pool routes a model to the replicas
whose model list names it, so a loaded adapter is marked served at once and an unloaded one no
longer. Known gap: a request whose adapter another request evicts between its load and its
dispatch gets the engine's 404 (rare under a sane slot count; the client's retry reloads it).
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from gateway.blobs import BlobStore
from gateway.errors import EngineUnavailable, no_such_model
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


class AdapterServing:
    def __init__(
        self, store: FineTuningStore, blobs: BlobStore, pool: UpstreamPool, work_dir: Path, slots: int
    ) -> None:
        self._store = store
        self._blobs = blobs
        self._pool = pool
        self._work_dir = work_dir
        self._slots = slots
        # Per replica, its adapters from least to most recently used.
        self._held: dict[str, collections.OrderedDict[str, None]] = collections.defaultdict(
            collections.OrderedDict
        )
        self._lock = asyncio.Lock()
        self._aliases: Aliases | None = None

    @staticmethod
    def owns(model: str | None) -> bool:
        return model is not None and model.startswith(PREFIX)

    def held(self, member: str) -> list[str]:
        return list(self._held[member])

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
        async with self._lock:
            for member in self._pool.members.values():
                if model in self._held[member.name]:
                    await self._unload(member, model)
        for name in ADAPTER_FILES:
            await self._blobs.delete(f"{row.adapter_key}{name}")
        await self._store.forget_model(row.id)
        return True

    async def _ensure_loaded(self, row: FineTuningJobRow, model: str) -> dict[str, Any]:
        if not self._bases(row.model):
            # No model list read yet (a fresh replica): ask the engines once.
            await self._pool.list_models(_LIST_TIMEOUT_S)
        async with self._lock:
            members = self._bases(row.model)
            if not members:
                raise EngineUnavailable(f"No replica serving {row.model} is available for {model}.")
            holding = [m for m in members if model in self._held[m.name]]
            if holding:
                member = min(holding, key=lambda m: m.outstanding)
                self._held[member.name].move_to_end(model)
            else:
                member = min(members, key=lambda m: (len(self._held[m.name]), m.outstanding))
                while len(self._held[member.name]) >= self._slots:
                    await self._unload(member, next(iter(self._held[member.name])))
                path = await self._unpack(row)
                assert isinstance(member.upstream, VllmUpstream)
                try:
                    await load_lora(member.upstream, model, str(path))
                except AdapterCallFailed as exc:
                    raise EngineUnavailable(f"The engine could not load {model}: {exc}") from exc
                self._held[member.name][model] = None
                member.served = member.served | {model}
            base = next((c for c in member.cards if c.get("id") == row.model), {})
            return dict(base)

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
        finally:
            self._held[member.name].pop(model, None)
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
