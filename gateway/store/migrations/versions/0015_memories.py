"""Memories (the memory API) and their history, each row with its owner (tenant), creator (key) and
end user (gateway/store/memories.py).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "memories",
        sa.Column("seq", _ID, primary_key=True),
        sa.Column("id", sa.String(160), nullable=False, unique=True),
        sa.Column("tenant_id", sa.String(40), nullable=True),
        sa.Column("created_by", sa.String(40), nullable=True),
        sa.Column("end_user", sa.String(256), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("user_id", sa.String(256), nullable=True),
        sa.Column("agent_id", sa.String(256), nullable=True),
        sa.Column("app_id", sa.String(256), nullable=True),
        sa.Column("run_id", sa.String(256), nullable=True),
        sa.Column("memory", sa.Text(), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("categories", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
    )
    op.create_index("ix_memories_tenant_user", "memories", ["tenant_id", "user_id"])
    op.create_index("ix_memories_tenant_agent", "memories", ["tenant_id", "agent_id"])
    op.create_index("ix_memories_tenant_run", "memories", ["tenant_id", "run_id"])
    op.create_index("ix_memories_created_by", "memories", ["created_by"])
    op.create_index("ix_memories_end_user", "memories", ["end_user"])
    op.create_table(
        "memory_history",
        sa.Column("seq", _ID, primary_key=True),
        sa.Column("id", sa.String(160), nullable=False, unique=True),
        sa.Column("memory_id", sa.String(160), nullable=False),
        sa.Column("tenant_id", sa.String(40), nullable=True),
        sa.Column("created_by", sa.String(40), nullable=True),
        sa.Column("end_user", sa.String(256), nullable=True),
        sa.Column("event", sa.String(16), nullable=False),
        sa.Column("old_memory", sa.Text(), nullable=True),
        sa.Column("new_memory", sa.Text(), nullable=True),
        sa.Column("input", sa.JSON(), nullable=True),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_memory_history_memory", "memory_history", ["tenant_id", "memory_id"])
    op.create_index("ix_memory_history_created_by", "memory_history", ["created_by"])
    op.create_index("ix_memory_history_end_user", "memory_history", ["end_user"])
    # Memory in chat per tenant and per key (null: the tenant's, then the operator's default).
    with op.batch_alter_table("tenants") as tenants:
        tenants.add_column(sa.Column("memory", sa.Boolean(), nullable=True))
    with op.batch_alter_table("api_keys") as keys:
        keys.add_column(sa.Column("memory", sa.Boolean(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as keys:
        keys.drop_column("memory")
    with op.batch_alter_table("tenants") as tenants:
        tenants.drop_column("memory")
    op.drop_table("memory_history")
    op.drop_table("memories")
