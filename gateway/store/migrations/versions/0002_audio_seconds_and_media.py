"""Audio seconds: a per-window limit on tenants and keys; the ledger records audio heard and media used.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable columns only: adding them is instant on PostgreSQL and needs no table copy on SQLite.
    for table in ("tenants", "api_keys"):
        op.add_column(table, sa.Column("audio_spm", sa.Integer(), nullable=True))
    op.add_column("usage", sa.Column("audio_seconds", sa.Float(asdecimal=False), nullable=True))
    op.add_column("usage", sa.Column("media", sa.JSON(), nullable=True))


def downgrade() -> None:
    # SQLite drops columns only by rebuilding the table, which batch mode does.
    with op.batch_alter_table("usage") as batch:
        batch.drop_column("media")
        batch.drop_column("audio_seconds")
    for table in ("api_keys", "tenants"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("audio_spm")
