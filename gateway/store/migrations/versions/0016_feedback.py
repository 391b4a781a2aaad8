"""Feedback on stored answers (gateway/store/feedback.py), each row with its owner (tenant), creator
(key) and end user; and the per-tenant fine-tuning caps `fine_tuning_jobs` and `fine_tuning_models`
on tenants and keys (docs/fine-tuning.md).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "feedback",
        sa.Column("seq", _ID, primary_key=True),
        sa.Column("id", sa.String(160), nullable=False, unique=True),
        sa.Column("tenant_id", sa.String(40), nullable=True),
        sa.Column("created_by", sa.String(40), nullable=True),
        sa.Column("end_user", sa.String(256), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("target_type", sa.String(32), nullable=False),
        sa.Column("target_id", sa.String(160), nullable=False),
        sa.Column("conversation_id", sa.String(160), nullable=True),
        sa.Column("model", sa.String(200), nullable=True),
        sa.Column("rating", sa.String(8), nullable=True),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("label", sa.String(64), nullable=True),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("correction", sa.Text(), nullable=True),
        sa.Column("prompt", sa.JSON(), nullable=False),
        sa.Column("answer", sa.JSON(), nullable=True),
        sa.Column("prompt_hash", sa.String(64), nullable=False),
    )
    op.create_index("ix_feedback_tenant_time", "feedback", ["tenant_id", "created_at"])
    op.create_index("ix_feedback_tenant_target", "feedback", ["tenant_id", "target_id"])
    op.create_index("ix_feedback_tenant_prompt", "feedback", ["tenant_id", "prompt_hash"])
    op.create_index("ix_feedback_created_by", "feedback", ["created_by"])
    op.create_index("ix_feedback_end_user", "feedback", ["end_user"])
    # Added columns only (nullable): no table copy on SQLite.
    for table in ("tenants", "api_keys"):
        op.add_column(table, sa.Column("fine_tuning_jobs", sa.Integer(), nullable=True))
        op.add_column(table, sa.Column("fine_tuning_models", sa.Integer(), nullable=True))


def downgrade() -> None:
    for table in ("tenants", "api_keys"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("fine_tuning_models")
            batch.drop_column("fine_tuning_jobs")
    op.drop_table("feedback")
