"""Moderation: each tenant's moderation policy, and the flags moderation raised (each with its
owner (tenant), the key that made the request and the end user), gateway/store/moderation.py.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "moderation_policies",
        sa.Column("tenant_id", sa.String(40), primary_key=True),
        sa.Column("policy", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "moderation_flags",
        sa.Column("seq", _ID, primary_key=True),
        sa.Column("id", sa.String(160), nullable=False, unique=True),
        sa.Column("tenant_id", sa.String(40), nullable=True),
        sa.Column("created_by", sa.String(40), nullable=True),
        sa.Column("end_user", sa.String(256), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("request_id", sa.String(200), nullable=True),
        sa.Column("endpoint", sa.String(100), nullable=False),
        sa.Column("model", sa.String(200), nullable=True),
        sa.Column("stage", sa.String(16), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("categories", sa.JSON(), nullable=False),
        sa.Column("scores", sa.JSON(), nullable=False),
        sa.Column("excerpt", sa.Text(), nullable=True),
    )
    op.create_index("ix_moderation_flags_tenant_time", "moderation_flags", ["tenant_id", "created_at"])
    op.create_index("ix_moderation_flags_created_by", "moderation_flags", ["created_by"])
    op.create_index("ix_moderation_flags_end_user", "moderation_flags", ["end_user"])


def downgrade() -> None:
    op.drop_table("moderation_flags")
    op.drop_table("moderation_policies")
