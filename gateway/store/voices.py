"""Custom voices (OpenAI's `/v1/audio/voice_consents` and `/v1/audio/voices`): a tenant's consent
recordings and the voices made from a reference clip under one of them. The recordings' and clips'
bytes live in the blob store (`blob_key`); each row keeps who uploaded it (the key, and the end user
an authenticating proxy names) and when, for the consent trail and GDPR erasure."""

from __future__ import annotations

from typing import TypeVar

from sqlalchemy import Float, Index, String, delete, select
from sqlalchemy.orm import Mapped, mapped_column

from gateway.store.database import Database
from gateway.store.models import Base
from gateway.store.owned import OwnedColumns, Owner, PageQuery, paged


class StoredVoiceConsent(OwnedColumns, Base):
    """A consent recording: the voice actor reading a consent phrase in `language`."""

    __tablename__ = "voice_consents"
    __table_args__ = (
        Index("ix_voice_consents_tenant_time", "tenant_id", "created_at"),
        Index("ix_voice_consents_end_user", "end_user"),
    )

    name: Mapped[str] = mapped_column(String(256), nullable=False)
    language: Mapped[str] = mapped_column(String(35), nullable=False)
    blob_key: Mapped[str] = mapped_column(String(400), nullable=False)
    seconds: Mapped[float] = mapped_column(Float(asdecimal=False), nullable=False)


class StoredVoice(OwnedColumns, Base):
    """A custom voice: a reference clip, made under a consent recording of the same tenant."""

    __tablename__ = "custom_voices"
    __table_args__ = (
        Index("ix_custom_voices_tenant_time", "tenant_id", "created_at"),
        Index("ix_custom_voices_end_user", "end_user"),
    )

    name: Mapped[str] = mapped_column(String(256), nullable=False)
    consent_id: Mapped[str] = mapped_column(String(160), nullable=False)
    # The consent's language: the one XTTS speaks the voice in.
    language: Mapped[str] = mapped_column(String(35), nullable=False)
    blob_key: Mapped[str] = mapped_column(String(400), nullable=False)
    seconds: Mapped[float] = mapped_column(Float(asdecimal=False), nullable=False)


VoiceRow = StoredVoice | StoredVoiceConsent
Row = TypeVar("Row", StoredVoice, StoredVoiceConsent)


class VoiceStore:
    """Consents and voices, always read through their owner's tenant (another's is not found)."""

    def __init__(self, database: Database) -> None:
        self.db = database

    async def add(self, row: VoiceRow) -> None:
        async with self.db.session() as session:
            session.add(row)
            await session.commit()

    async def get(self, table: type[Row], owner: Owner, object_id: str) -> Row | None:
        async with self.db.session() as session:
            query = select(table).where(owner.owns(table), table.id == object_id)
            return (await session.scalars(query)).first()

    async def page(self, table: type[Row], owner: Owner, query: PageQuery) -> list[Row]:
        """One page, with one row more than `limit` when there are more."""
        async with self.db.session() as session:
            cursor = None
            if query.after is not None:
                after = await session.scalars(select(table).where(owner.owns(table), table.id == query.after))
                found = after.first()
                cursor = None if found is None else (found.created_at, found.seq)
            statement = paged(select(table).where(owner.owns(table)), table, cursor, query)
            return list((await session.scalars(statement)).all())

    async def voice(self, tenant_id: str | None, voice_id: str) -> StoredVoice | None:
        return await self.get(StoredVoice, Owner(tenant_id), voice_id)

    async def rename(self, owner: Owner, consent_id: str, name: str) -> StoredVoiceConsent | None:
        async with self.db.session() as session:
            query = select(StoredVoiceConsent).where(
                owner.owns(StoredVoiceConsent), StoredVoiceConsent.id == consent_id
            )
            row = (await session.scalars(query)).first()
            if row is not None:
                row.name = name
                await session.commit()
            return row

    async def remove(self, table: type[Row], owner: Owner, object_id: str) -> list[VoiceRow] | None:
        """Delete the row (a consent with the voices made under it: consent withdrawn); the rows
        deleted (their blobs and cloned voices go next), or None when it is not the owner's."""
        async with self.db.session() as session:
            row = (
                await session.scalars(select(table).where(owner.owns(table), table.id == object_id))
            ).first()
            if row is None:
                return None
            gone: list[VoiceRow] = [row]
            if isinstance(row, StoredVoiceConsent):
                made = select(StoredVoice).where(owner.owns(StoredVoice), StoredVoice.consent_id == row.id)
                gone += list((await session.scalars(made)).all())
                await session.execute(
                    delete(StoredVoice).where(StoredVoice.seq.in_([v.seq for v in gone[1:]]))
                )
            await session.execute(delete(table).where(table.seq == row.seq))
            await session.commit()
            return gone
