"""Memories can expire (`expires_at`: search skips them, the compression job removes them;
gateway/store/memories.py, gateway/services/memory_compress.py).

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("memories", sa.Column("expires_at", sa.DateTime(), nullable=True))
    op.create_index("ix_memories_expires_at", "memories", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_memories_expires_at", table_name="memories")
    op.drop_column("memories", "expires_at")
