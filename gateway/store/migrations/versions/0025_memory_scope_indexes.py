"""The memories' scope indexes carry `expires_at`: a search reads its scope's row numbers (tenant,
user/agent/run, unexpired) from the index alone instead of visiting each row with its vector
(10k memories: 54 -> 11 ms on SQLite; docs/memory.md, "Memory in chat: where the time went").

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None

_SCOPES = (("ix_memories_tenant_user", "user_id"), ("ix_memories_tenant_agent", "agent_id"),
           ("ix_memories_tenant_run", "run_id"))  # fmt: skip


def upgrade() -> None:
    for name, column in _SCOPES:
        op.drop_index(name, table_name="memories")
        op.create_index(name, "memories", ["tenant_id", column, "expires_at"])


def downgrade() -> None:
    for name, column in _SCOPES:
        op.drop_index(name, table_name="memories")
        op.create_index(name, "memories", ["tenant_id", column])
