"""The vector stores' tables on SQLite and PostgreSQL (the migration makes what the models describe,
reads scoped to the owner's tenant), and the pure parts: chunk windows, HTML as text, file types, and
OpenAI's attribute filters."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import update

from gateway.protocol.validation import parse_object
from gateway.protocol.vector_stores import SearchRequest, matches
from gateway.services.vector_core import new_store_file
from gateway.services.vector_text import Unreadable, file_text, html_text, token_ends, windows
from gateway.store import Database, utcnow
from gateway.store.file_models import StoredFile
from gateway.store.files import DELETING, PROCESSED
from gateway.store.owned import Owner, PageQuery
from gateway.store.vector_stores import COMPLETED, FileGone, StoredVectorStore, VectorStoreStore
from tests.adapters.media import text_pdf
from tests.services import PostgresServer

_names = itertools.count()
ACME, OTHER = Owner("tn_acme", "key_a"), Owner("tn_other", "key_o")


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[VectorStoreStore]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    else:
        server: PostgresServer = request.getfixturevalue("postgres_server")
        url = server.create_database(f"vector_stores_{next(_names)}")
    database = Database(url)
    await database.migrate()
    yield VectorStoreStore(database)
    await database.close()


async def a_file(store: VectorStoreStore, owner: Owner, file_id: str, user: str | None = None) -> None:
    """A processed file of the Files API (what a store file is made from)."""
    row = StoredFile(
        id=file_id,
        tenant_id=owner.tenant_id,
        created_by=owner.key_id,
        user=user,
        filename=f"{file_id}.txt",
        purpose="assistants",
        bytes=3,
        blob_key=f"files/{file_id}",
        status=PROCESSED,
        created_at=utcnow(),
    )
    async with store.db.session() as session, session.begin():
        session.add(row)


def vector_store(owner: Owner, store_id: str) -> StoredVectorStore:
    now = utcnow()
    return StoredVectorStore(
        id=store_id,
        tenant_id=owner.tenant_id,
        created_by=owner.key_id,
        created_at=now,
        tags={},
        name=store_id,
        last_active_at=now,
    )


async def test_the_migration_makes_the_tables_the_models_describe(store: VectorStoreStore) -> None:
    async with store.db.engine.connect() as conn:
        diff = await conn.run_sync(
            lambda sync: compare_metadata(MigrationContext.configure(sync), StoredVectorStore.metadata)
        )
    assert [c for c in diff if "vector_store" in str(c)] == []


async def test_rows_are_the_owners_and_chunks_land_once(store: VectorStoreStore) -> None:
    await store.add(vector_store(ACME, "vs_a"))
    await store.add(vector_store(OTHER, "vs_o"))
    assert await store.get(OTHER, "vs_a") is None and (await store.get(ACME, "vs_a")) is not None
    rows, more = await store.page(ACME, PageQuery(limit=10))
    assert [r.id for r in rows] == ["vs_a"] and not more
    await a_file(store, ACME, "file-1")
    (row,) = await store.attach(
        [new_store_file(ACME, "vs_a", "file-1", "a.txt", {"type": "static"}, {"k": 1})]
    )
    added = await store.add_chunks(row, [("one", b"\x00" * 8), ("two", b"\x01" * 8)], 6)
    assert added is not None and len(added) == 2
    assert await store.add_chunks(row, [("again", b"\x00" * 8)], 5) is None  # completed already
    assert (await store.counts("vs_a")).as_dict()["completed"] == 1
    assert await store.usage_bytes("vs_a") == 6
    assert [c.text for c in await store.chunks("vs_a")] == ["one", "two"]
    assert await store.file(OTHER, "vs_a", "file-1") is None
    assert (await store.file(ACME, "vs_a", "file-1")).status == COMPLETED  # type: ignore[union-attr]
    assert await store.detach(OTHER, "vs_a", "file-1") is None
    assert sorted(await store.detach(ACME, "vs_a", "file-1") or []) == sorted(added)
    assert await store.chunks("vs_a") == []
    assert not await store.delete(OTHER, "vs_a") and await store.delete(ACME, "vs_a")


async def test_a_deleted_file_leaves_every_store_and_cannot_be_attached(store: VectorStoreStore) -> None:
    for store_id in ("vs_1", "vs_2"):
        await store.add(vector_store(ACME, store_id))
    for file_id, user in (("file-a", "alice"), ("file-b", None)):
        await a_file(store, ACME, file_id, user)
    added: dict[str, list[int]] = {}
    for store_id, file_id in (("vs_1", "file-a"), ("vs_1", "file-b"), ("vs_2", "file-a")):
        (row,) = await store.attach([new_store_file(ACME, store_id, file_id, "f.txt", {}, None)])
        seqs = await store.add_chunks(row, [("x", b"\x00" * 8), ("yy", b"\x01" * 8)], 3)
        assert seqs is not None
        added.setdefault(store_id, []).extend(seqs)
    assert await store.user_files("tn_acme", "alice") == ["file-a"]
    assert sorted(await store.user_files("tn_acme", None)) == ["file-a", "file-b"]
    dropped = await store.drop_files(["file-a"])
    assert sorted(dropped) == ["vs_1", "vs_2"] and sorted(dropped["vs_2"]) == sorted(added["vs_2"])
    assert len(dropped["vs_1"]) == 2 and set(dropped["vs_1"]) < set(added["vs_1"])
    assert (await store.counts("vs_1")).as_dict()["total"] == 1 and await store.usage_bytes("vs_1") == 3
    assert (await store.counts("vs_2")).as_dict()["total"] == 0 and await store.usage_bytes("vs_2") == 0
    assert {c.file_id for c in await store.chunks("vs_1")} == {"file-b"} and await store.chunks("vs_2") == []
    assert not await store.holds("vs_2", "file-a") and await store.holds("vs_1", "file-b")
    assert await store.drop_files(["file-a"]) == {}  # idempotent
    # A file being deleted (its tombstone) or gone is not attached, nothing of the batch is.
    async with store.db.session() as session, session.begin():
        await session.execute(update(StoredFile).where(StoredFile.id == "file-b").values(status=DELETING))
    for file_id in ("file-b", "file-none"):
        with pytest.raises(FileGone):
            await store.attach([new_store_file(ACME, "vs_2", file_id, "f.txt", {}, None)])
    assert (await store.counts("vs_2")).as_dict()["total"] == 0


def test_windows_overlap_and_end_at_the_last_token() -> None:
    assert windows(0, 800, 400) == []
    assert windows(300, 800, 400) == [(0, 300)]
    assert windows(250, 100, 20) == [(0, 100), (80, 180), (160, 250)]
    assert windows(1200, 800, 400) == [(0, 800), (400, 1200)]


def test_token_ends_keep_the_texts_own_words() -> None:
    text = "Café au LAIT, naïve  résumé [x]"
    # As an uncased WordPiece tokenizer splits it (accents stripped, an unknown token).
    strs = ["cafe", "au", "lait", ",", "na", "##ive", "resume", "[UNK]", "x", "]"]
    ends = token_ends(text, strs)
    assert ends[-1] == len(text) and ends == sorted(ends)
    pieces = [text[(ends[s - 1] if s else 0) : ends[e - 1]].strip() for s, e in windows(len(ends), 4, 0)]
    # Tokens not found (accents stripped) end where the one before did: their text goes to the next
    # token found, and nothing of the text is lost.
    assert pieces == ["Café au LAIT,", "na", "ïve  résumé [x]"]
    # Byte-level BPE marks spaces with Ġ and newlines with Ċ.
    assert token_ends("Hello world\nok", ["Hello", "Ġworld", "Ċ", "ok"]) == [5, 11, 11, 14]


def test_file_text_by_type() -> None:
    page = (
        "<html><head><title>t</title><script>x()</script></head>"
        "<body><p>One &amp; two</p><div>three</div></body></html>"
    )
    assert html_text(page) == "One & two\nthree"
    assert file_text(page.encode(), "text/html", "page.html") == "One & two\nthree"
    assert file_text(b"# Title\nbody", None, "notes.md") == "# Title\nbody"
    pdf = file_text(text_pdf(["Lava flows downhill", "Magma cools"]), "application/pdf", "rocks.pdf")
    assert "[page 1]\nLava flows downhill" in pdf and "[page 2]\nMagma cools" in pdf
    with pytest.raises(Unreadable) as caught:
        file_text(b"\x00\x01binary", "application/octet-stream", "blob.bin")
    assert caught.value.code == "unsupported_file"
    with pytest.raises(Unreadable) as caught:
        file_text(b"%PDF-1.4 broken", "application/pdf", "broken.pdf")
    assert caught.value.code == "invalid_file"


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"type": "eq", "key": "a", "value": "x"}, True),
        ({"type": "ne", "key": "a", "value": "x"}, False),
        ({"type": "ne", "key": "missing", "value": "x"}, True),
        ({"type": "gt", "key": "n", "value": 2}, True),
        ({"type": "lte", "key": "n", "value": 2}, False),
        ({"type": "gt", "key": "a", "value": 2}, False),  # a string against a number never matches
        ({"type": "in", "key": "a", "value": ["x", "y"]}, True),
        ({"type": "nin", "key": "a", "value": ["x"]}, False),
        ({"type": "eq", "key": "flag", "value": True}, True),
        (
            {
                "type": "and",
                "filters": [{"type": "eq", "key": "a", "value": "x"}, {"type": "lt", "key": "n", "value": 3}],
            },
            False,
        ),
        (
            {
                "type": "or",
                "filters": [
                    {"type": "eq", "key": "a", "value": "z"},
                    {"type": "gte", "key": "n", "value": 3},
                ],
            },
            True,
        ),
    ],
)
def test_attribute_filters_as_openais(spec: dict[str, Any], expected: bool) -> None:
    parsed = parse_object(SearchRequest, {"query": "q", "filters": spec}, "x")
    assert matches(parsed.filters, {"a": "x", "n": 3, "flag": True}) is expected
