"""Custom voices (gateway/store/voices.py, docs/audio.md "Custom voices"): a tenant's consent
recordings and the voices made from a reference clip under one, each with its owner, creator (key)
and end user; the audio itself is in the blob store.

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0026"
down_revision = "0025"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _owned(*columns: sa.Column[object]) -> list[sa.Column[object]]:
    return [
        sa.Column("seq", _ID, primary_key=True),
        sa.Column("id", sa.String(160), nullable=False, unique=True),
        sa.Column("tenant_id", sa.String(40), nullable=True),
        sa.Column("created_by", sa.String(40), nullable=True),
        sa.Column("end_user", sa.String(256), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("name", sa.String(256), nullable=False),
        *columns,
        sa.Column("blob_key", sa.String(400), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
    ]


def upgrade() -> None:
    op.create_table("voice_consents", *_owned(sa.Column("language", sa.String(35), nullable=False)))
    op.create_index("ix_voice_consents_tenant_time", "voice_consents", ["tenant_id", "created_at"])
    op.create_index("ix_voice_consents_end_user", "voice_consents", ["end_user"])
    op.create_table(
        "custom_voices",
        *_owned(
            sa.Column("consent_id", sa.String(160), nullable=False),
            sa.Column("language", sa.String(35), nullable=False),
        ),
    )
    op.create_index("ix_custom_voices_tenant_time", "custom_voices", ["tenant_id", "created_at"])
    op.create_index("ix_custom_voices_end_user", "custom_voices", ["end_user"])


def downgrade() -> None:
    op.drop_table("custom_voices")
    op.drop_table("voice_consents")
