"""The batch token quota (OpenAI's "enqueued tokens"): `batch_tokens` on tenants and keys, and each
batch's estimated input tokens (`enqueued_tokens`), counted against them until it ends.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Added columns only (nullable, or with a constant default): no table copy on SQLite.
    for table in ("tenants", "api_keys"):
        op.add_column(table, sa.Column("batch_tokens", sa.BigInteger(), nullable=True))
    op.add_column(
        "batches", sa.Column("enqueued_tokens", sa.BigInteger(), nullable=False, server_default="0")
    )


def downgrade() -> None:
    with op.batch_alter_table("batches") as batch:
        batch.drop_column("enqueued_tokens")
    for table in ("tenants", "api_keys"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("batch_tokens")
