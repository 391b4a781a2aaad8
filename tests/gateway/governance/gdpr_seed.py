"""Data of every kind the GDPR registry knows, for one end user of one tenant: SQL rows (through the
store's tables), their blobs on disk and their memory vectors in a real FAISS index."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import func, select

from gateway.blobs import LocalBlobStore
from gateway.memory.index import VectorIndex
from gateway.services.adapters import ADAPTER_FILES
from gateway.store import Database
from gateway.store.batches import Batch, BatchLine
from gateway.store.completions import StoredCompletion
from gateway.store.conversations import StoredConversation, StoredItem
from gateway.store.feedback import StoredFeedback
from gateway.store.file_models import StoredFile, Upload, UploadPart
from gateway.store.fine_tuning import FineTuningEventRow, FineTuningJobRow
from gateway.store.job_rows import JobRow
from gateway.store.memories import StoredMemory, StoredMemoryEvent
from gateway.store.memory_recalls import StoredRecall
from gateway.store.models import UsageRecord
from gateway.store.moderation import StoredFlag
from gateway.store.responses import ResponseEvent, StoredResponse
from gateway.store.voices import StoredVoice, StoredVoiceConsent

T0 = datetime(2026, 11, 1, 12, 0)
# Every table seeded, with the column naming its end user (None: a child, found through its parent).
SEEDED: dict[Any, str] = {
    StoredCompletion: "end_user",
    StoredResponse: "end_user",
    StoredConversation: "end_user",
    StoredItem: "end_user",
    StoredFile: "user",
    Upload: "user",
    UploadPart: "user",
    Batch: "end_user",
    StoredMemory: "end_user",
    StoredMemoryEvent: "end_user",
    StoredRecall: "end_user",
    StoredFeedback: "end_user",
    FineTuningJobRow: "end_user",
    StoredFlag: "end_user",
    JobRow: "user",
    StoredVoiceConsent: "end_user",
    StoredVoice: "end_user",
}


@dataclass
class Seeded:
    """What one subject's seed made outside SQL."""

    blob_keys: list[str] = field(default_factory=list)
    memory_seqs: list[int] = field(default_factory=list)
    request_ids: list[str] = field(default_factory=list)


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


def vector(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(8).astype(np.float32)


async def seed_user(
    database: Database, blobs: LocalBlobStore, index: VectorIndex, tenant: str, user: str
) -> Seeded:
    name = f"{tenant}_{user}"
    made = Seeded()
    owned = {"tenant_id": tenant, "created_by": f"key_{tenant}", "end_user": user, "created_at": T0}
    file_key = f"files/{tenant}/{name}"
    part_key = f"uploads/{tenant}/{name}-part"
    await blobs.put(file_key, _chunks(f"the file of {name}".encode()))
    await blobs.put(part_key, _chunks(b"part"))
    made.blob_keys += [file_key, part_key]
    consent_key, clip_key = f"voice-consent/{tenant}/{name}", f"voice/{tenant}/{name}"
    await blobs.put(consent_key, _chunks(f"the consent of {name}".encode()))
    await blobs.put(clip_key, _chunks(f"the voice of {name}".encode()))
    made.blob_keys += [consent_key, clip_key]
    for adapter_file in ADAPTER_FILES:
        await blobs.put(f"adapters/{tenant}/{name}/{adapter_file}", _chunks(b"lora"))
        made.blob_keys.append(f"adapters/{tenant}/{name}/{adapter_file}")
    # Two rows written before the ledger kept end users (linked through the stored completion's and
    # the flag's request ids), one naming its end user.
    made.request_ids = [f"req_{name}_chat", f"req_{name}_flag", f"req_{name}_named"]
    async with database.session() as session:
        for index_, request_id in enumerate(made.request_ids):
            session.add(
                UsageRecord(
                    created_at=T0,
                    request_id=request_id,
                    client_request_id=f"client_{request_id}",
                    tenant_id=tenant,
                    key_id=f"key_{tenant}",
                    model="m",
                    endpoint="/v1/chat/completions",
                    stream=False,
                    prompt_tokens=10 + index_,
                    completion_tokens=5,
                    cost_micros=100 + index_,
                    latency_ms=1,
                    status=200,
                    outcome="completed",
                    media={"images": 1},
                    end_user=user if index_ == 2 else None,
                )
            )
        session.add(
            StoredCompletion(
                id=f"chatcmpl_{name}",
                model="m",
                created=1,
                request_id=made.request_ids[0],
                messages=[{"role": "user", "content": f"hello from {name}"}],
                choices=[],
                **owned,
            )
        )
        session.add(
            StoredResponse(id=f"resp_{name}", model="m", status="completed", input_items=[], body={}, **owned)
        )
        session.add(ResponseEvent(response_id=f"resp_{name}", sequence=0, event={"who": name}))
        conversation = StoredConversation(id=f"conv_{name}", **owned)
        session.add(conversation)
        await session.flush()
        session.add(
            StoredItem(
                conversation_seq=conversation.seq,
                position=0,
                item_id=f"msg_{name}",
                type="message",
                body={"text": name},
                **{k: v for k, v in owned.items()},
            )
        )
        file_owner = {"tenant_id": tenant, "created_by": f"key_{tenant}", "user": user, "created_at": T0}
        session.add(
            StoredFile(
                id=f"file_{name}",
                filename="train.jsonl",
                purpose="fine-tune",
                blob_key=file_key,
                status="processed",
                bytes=10,
                **file_owner,
            )
        )
        session.add(
            Upload(
                id=f"upload_{name}",
                filename="big.bin",
                purpose="batch",
                bytes=4,
                mime_type="application/octet-stream",
                status="pending",
                expires_at=T0 + timedelta(hours=1),
                **file_owner,
            )
        )
        await session.flush()
        session.add(
            UploadPart(
                id=f"part_{name}", upload_id=f"upload_{name}", bytes=4, blob_key=part_key, **file_owner
            )
        )
        session.add(
            Batch(
                id=f"batch_{name}",
                endpoint="/v1/chat/completions",
                input_file_id=f"file_{name}",
                completion_window="24h",
                status="completed",
                expires_at=T0 + timedelta(days=1),
                **owned,
            )
        )
        session.add(BatchLine(batch_id=f"batch_{name}", line=1, ok=True, text="{}"))
        memory = StoredMemory(
            id=f"mem_{name}",
            user_id=user,
            memory=f"{name} likes tea",
            hash=name,
            updated_at=T0,
            vector=vector(sum(name.encode())).tobytes(),
            **owned,
        )
        session.add(memory)
        session.add(
            StoredMemoryEvent(
                id=f"memevt_{name}",
                memory_id=f"mem_{name}",
                event="ADD",
                created_at=T0,
                tenant_id=tenant,
                end_user=user,
            )
        )
        # The history of a memory deleted earlier: kept by the memory API, still the user's.
        session.add(
            StoredMemoryEvent(
                id=f"memevt_{name}_gone",
                memory_id=f"mem_{name}_gone",
                event="DELETE",
                created_at=T0,
                tenant_id=tenant,
                end_user=user,
            )
        )
        session.add(
            StoredRecall(
                id=f"mrec_{name}",
                request_id=made.request_ids[0],
                tenant_id=tenant,
                created_by=owned["created_by"],
                end_user=user,
                created_at=T0,
                found=[{"id": f"mem_{name}", "score": 0.9, "placed": True}],
                prompt=f"- the memory of {name}",
                tokens=6,
            )
        )
        session.add(
            StoredFeedback(
                id=f"feedback_{name}",
                target_type="chat.completion",
                target_id=f"chatcmpl_{name}",
                rating="bad",
                prompt=[{"role": "user", "content": name}],
                answer=[],
                prompt_hash=name,
                **owned,
            )
        )
        session.add(
            FineTuningJobRow(
                id=f"ftjob_{name}",
                model="m",
                training_file=f"file_{name}",
                seed=1,
                method={},
                status="succeeded",
                adapter_key=f"adapters/{tenant}/{name}/",
                **owned,
            )
        )
        session.add(
            FineTuningEventRow(
                id=f"ftevent_{name}",
                job_id=f"ftjob_{name}",
                created_at=T0,
                level="info",
                type="message",
                message="m",
            )
        )
        session.add(
            StoredFlag(
                id=f"modflag_{name}",
                request_id=made.request_ids[1],
                endpoint="/v1/chat/completions",
                stage="input",
                action="flagged",
                categories=["harassment"],
                scores={},
                excerpt=f"rude words of {name}",
                **{k: v for k, v in owned.items() if k != "created_by"},
            )
        )
        session.add(
            JobRow(
                id=f"job_{name}",
                kind="batch",
                tenant_id=tenant,
                user=user,
                status="completed",
                priority=0,
                payload={},
                attempts=1,
                max_attempts=1,
                run_after=T0,
                created_at=T0,
                updated_at=T0,
            )
        )
        voice = {"name": name, "language": "en-US", "seconds": 3.0, "tags": {}, **owned}
        session.add(StoredVoiceConsent(id=f"cons_{name}", blob_key=consent_key, **voice))
        session.add(StoredVoice(id=f"voice_{name}", consent_id=f"cons_{name}", blob_key=clip_key, **voice))
        await session.commit()
        made.memory_seqs = [memory.seq]
    await index.add(tenant, {memory.seq: vector(sum(name.encode()))})
    return made


async def counts(database: Database, tenant: str, user: str | None) -> dict[str, int]:
    """Rows of each seeded table naming the subject."""
    found = {}
    async with database.session() as session:
        for table, column in SEEDED.items():
            query = select(func.count()).select_from(table).where(table.tenant_id == tenant)
            if user is not None:
                query = query.where(getattr(table, column) == user)
            found[table.__tablename__] = int(await session.scalar(query) or 0)
    return found


async def ledger(database: Database, tenant: str) -> list[UsageRecord]:
    async with database.session() as session:
        query = select(UsageRecord).where(UsageRecord.tenant_id == tenant).order_by(UsageRecord.id)
        return list((await session.scalars(query)).all())
