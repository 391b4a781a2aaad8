"""Conversations (OpenAI's Conversations API) and their items, each row with its owner (tenant),
creator (key) and end user (gateway/store/conversations.py).

Revision ID: 0010
Revises: 0007
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "conversations",
        sa.Column("seq", _ID, primary_key=True),
        sa.Column("id", sa.String(160), nullable=False, unique=True),
        sa.Column("tenant_id", sa.String(40), nullable=True),
        sa.Column("created_by", sa.String(40), nullable=True),
        sa.Column("end_user", sa.String(256), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("item_count", sa.Integer(), nullable=False),
    )
    op.create_index("ix_conversations_tenant_time", "conversations", ["tenant_id", "created_at"])
    op.create_index("ix_conversations_created_by", "conversations", ["created_by"])
    op.create_index("ix_conversations_end_user", "conversations", ["end_user"])
    op.create_table(
        "conversation_items",
        sa.Column("seq", _ID, primary_key=True),
        sa.Column(
            "conversation_seq", _ID, sa.ForeignKey("conversations.seq", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.String(160), nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("tenant_id", sa.String(40), nullable=True),
        sa.Column("created_by", sa.String(40), nullable=True),
        sa.Column("end_user", sa.String(256), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.UniqueConstraint("conversation_seq", "item_id", name="uq_conversation_items_item"),
        sa.UniqueConstraint("conversation_seq", "position", name="uq_conversation_items_position"),
    )
    op.create_index("ix_conversation_items_created_by", "conversation_items", ["created_by"])
    op.create_index("ix_conversation_items_end_user", "conversation_items", ["end_user"])


def downgrade() -> None:
    op.drop_table("conversation_items")
    op.drop_table("conversations")
