"""index images by sha256 alone

Uploads ask whether any project already stored a blob (blobs are content-addressed and shared by
projects); without this index that question scans the whole images table.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21 04:30:00
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_images_sha256", "images", ["sha256"])


def downgrade() -> None:
    op.drop_index("ix_images_sha256", table_name="images")
