"""The end user of each ledger row (`usage.end_user`: OpenAI's `user` or `safety_identifier` of the
request), so that a GDPR erasure finds and pseudonymises a user's billing rows
(gateway/store/gdpr_special.py).

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("usage") as batch:
        batch.add_column(sa.Column("end_user", sa.String(256), nullable=True))
    op.create_index("ix_usage_tenant_end_user", "usage", ["tenant_id", "end_user"])


def downgrade() -> None:
    op.drop_index("ix_usage_tenant_end_user", table_name="usage")
    with op.batch_alter_table("usage") as batch:
        batch.drop_column("end_user")
