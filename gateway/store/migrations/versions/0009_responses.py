"""Stored responses (the Responses API) and the stream events of background responses, with their
owner (tenant), creator (key), end user and metadata (gateway/store/owned.py).

Revision ID: 0009
Revises: 0007
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "responses",
        sa.Column("seq", _ID, primary_key=True),
        sa.Column("id", sa.String(160), nullable=False, unique=True),
        sa.Column("tenant_id", sa.String(40), nullable=True),
        sa.Column("created_by", sa.String(40), nullable=True),
        sa.Column("end_user", sa.String(256), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("background", sa.Boolean(), nullable=False),
        sa.Column("previous_response_id", sa.String(160), nullable=True),
        sa.Column("job_id", sa.String(64), nullable=True),
        sa.Column("input_items", sa.JSON(), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
    )
    op.create_index("ix_responses_tenant_time", "responses", ["tenant_id", "created_at"])
    op.create_index("ix_responses_created_by", "responses", ["created_by"])
    op.create_index("ix_responses_end_user", "responses", ["end_user"])
    op.create_table(
        "response_events",
        sa.Column("seq", _ID, primary_key=True),
        sa.Column("response_id", sa.String(160), nullable=False),
        sa.Column("sequence", _ID, nullable=False),
        sa.Column("event", sa.JSON(), nullable=False),
    )
    op.create_index(
        "ix_response_events_response_seq", "response_events", ["response_id", "sequence"], unique=True
    )


def downgrade() -> None:
    op.drop_table("response_events")
    op.drop_table("responses")
