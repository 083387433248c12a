"""log the blobs the sweep deletes

With several hub replicas an upload's row transaction looks here for a deletion of its bytes
after its put (see ``loop/blob_fence.py``).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21 22:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "swept_blobs",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_swept_blobs")),
    )
    op.create_index("ix_swept_blobs_sha256", "swept_blobs", ["sha256", "seq"])


def downgrade() -> None:
    op.drop_index("ix_swept_blobs_sha256", table_name="swept_blobs")
    op.drop_table("swept_blobs")
