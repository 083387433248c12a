"""annotations carry COCO's crowd flag

Imported crowd regions (``iscrowd: 1``) stay crowd regions: exported as such and ignored by
evaluation, as COCO does. Existing annotations are no crowd.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06 04:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("annotations") as batch:
        batch.add_column(sa.Column("crowd", sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("annotations") as batch:
        batch.drop_column("crowd")
