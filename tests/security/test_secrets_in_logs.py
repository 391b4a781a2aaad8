"""Issue 16, point 12: secrets and other tenants' rows stay out of the logs, tracebacks included."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from gateway.observability import configure_logging
from gateway.observability.logs import reset_logging
from gateway.store import Database

KEY = "sk-tantra-" + "Q" * 40


def test_a_key_in_an_exception_message_is_masked_in_its_traceback() -> None:
    """The redactor ran before the traceback was formatted: a key quoted by an exception's
    message went out whole."""
    stream = io.StringIO()
    configure_logging(log_format="json", level="info", stream=stream)
    try:
        try:
            raise ValueError(f"the upstream refused key {KEY} at postgresql://tantra:hunter2@db/tantra")
        except ValueError:
            logging.getLogger("tantra.test").exception("a request failed")
    finally:
        reset_logging()
    out = stream.getvalue()
    assert "a request failed" in out and "ValueError" in out
    assert KEY not in out and "hunter2" not in out
    assert "sk-tantra-QQQQ***" in out


async def test_a_refused_statement_does_not_quote_its_rows(tmp_path: Path) -> None:
    """A batch the database refuses is logged by its error: the error must not carry the batch's
    rows (other tenants' usage) as its parameters."""
    database = Database(f"sqlite+aiosqlite:///{tmp_path}/ledger.db")
    try:
        async with database.session() as session:
            with pytest.raises(SQLAlchemyError) as refused:
                await session.execute(
                    text("INSERT INTO no_such_table VALUES (:row)"), {"row": "tenant-b-row"}
                )
    finally:
        await database.close()
    assert "no_such_table" in str(refused.value)
    assert "tenant-b-row" not in str(refused.value)
