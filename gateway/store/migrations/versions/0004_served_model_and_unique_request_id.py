"""The ledger records the model that served (a fallback's) beside the one asked for, and the
client's own request id beside the gateway's, which becomes unique: a retried write cannot add a
row twice.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("usage", sa.Column("served_model", sa.String(200), nullable=True))
    op.add_column("usage", sa.Column("client_request_id", sa.String(160), nullable=True))
    # Rows written before this revision carry the client's x-request-id, which a client may reuse:
    # every repeat after the first gets its row id appended (at most 128 + 20 characters), so the
    # index can be unique. Their `client_request_id` stays NULL: which ids a client sent is unknown.
    op.execute(
        "UPDATE usage SET request_id = request_id || '~' || CAST(id AS VARCHAR(20)) "
        "WHERE id NOT IN (SELECT MIN(id) FROM usage GROUP BY request_id)"
    )
    op.create_index("uq_usage_request_id", "usage", ["request_id"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_usage_request_id", table_name="usage")
    with op.batch_alter_table("usage") as batch:
        batch.drop_column("client_request_id")
        batch.drop_column("served_model")
