"""Self-monitoring evaluations: eval sets and their runs per model version (gateway/store/evals.py).

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "eval_sets",
        sa.Column("seq", _ID, primary_key=True),
        sa.Column("id", sa.String(160), nullable=False, unique=True),
        sa.Column("tenant_id", sa.String(40), nullable=True),
        sa.Column("created_by", sa.String(40), nullable=True),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("model", sa.String(256), nullable=False),
        sa.Column("items", sa.JSON(), nullable=False),
        sa.Column("interval_s", sa.Float(), nullable=True),
        sa.Column("margin", sa.Float(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_eval_sets_tenant", "eval_sets", ["tenant_id"])
    op.create_table(
        "eval_runs",
        sa.Column("seq", _ID, primary_key=True),
        sa.Column("id", sa.String(160), nullable=False, unique=True),
        sa.Column("set_id", sa.String(160), nullable=False),
        sa.Column("tenant_id", sa.String(40), nullable=True),
        sa.Column("model", sa.String(256), nullable=False),
        sa.Column("version", sa.String(512), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("passed", sa.Integer(), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("results", sa.JSON(), nullable=False),
        sa.Column("regression", sa.Boolean(), nullable=False),
        sa.Column("previous_version", sa.String(512), nullable=True),
        sa.Column("previous_score", sa.Float(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_eval_runs_set_time", "eval_runs", ["set_id", "created_at"])
    op.create_index("ix_eval_runs_tenant", "eval_runs", ["tenant_id"])


def downgrade() -> None:
    op.drop_index("ix_eval_runs_tenant", table_name="eval_runs")
    op.drop_index("ix_eval_runs_set_time", table_name="eval_runs")
    op.drop_table("eval_runs")
    op.drop_index("ix_eval_sets_tenant", table_name="eval_sets")
    op.drop_table("eval_sets")
