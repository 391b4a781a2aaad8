"""Fine-tuning jobs (OpenAI's fine-tuning API) and their events, each job with its owner (tenant),
creator (key) and end user (gateway/store/fine_tuning.py).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "fine_tuning_jobs",
        sa.Column("seq", _ID, primary_key=True),
        sa.Column("id", sa.String(160), nullable=False, unique=True),
        sa.Column("tenant_id", sa.String(40), nullable=True),
        sa.Column("created_by", sa.String(40), nullable=True),
        sa.Column("end_user", sa.String(256), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("training_file", sa.String(160), nullable=False),
        sa.Column("validation_file", sa.String(160), nullable=True),
        sa.Column("suffix", sa.String(64), nullable=True),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("method", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("fine_tuned_model", sa.String(300), nullable=True),
        sa.Column("adapter_key", sa.String(300), nullable=True),
        sa.Column("trained_tokens", sa.Integer(), nullable=True),
        sa.Column("metrics", sa.JSON(), nullable=True),
        sa.Column("error", sa.JSON(), nullable=True),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
    )
    op.create_index("ix_fine_tuning_jobs_tenant_time", "fine_tuning_jobs", ["tenant_id", "created_at"])
    op.create_index("ix_fine_tuning_jobs_created_by", "fine_tuning_jobs", ["created_by"])
    op.create_index("ix_fine_tuning_jobs_end_user", "fine_tuning_jobs", ["end_user"])
    op.create_index("ix_fine_tuning_jobs_model", "fine_tuning_jobs", ["fine_tuned_model"])
    op.create_table(
        "fine_tuning_events",
        sa.Column("seq", _ID, primary_key=True),
        sa.Column("id", sa.String(160), nullable=False, unique=True),
        sa.Column("job_id", sa.String(160), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("level", sa.String(8), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=True),
    )
    op.create_index("ix_fine_tuning_events_job", "fine_tuning_events", ["job_id", "seq"])


def downgrade() -> None:
    op.drop_table("fine_tuning_events")
    op.drop_table("fine_tuning_jobs")
