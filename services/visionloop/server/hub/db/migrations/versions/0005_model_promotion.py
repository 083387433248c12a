"""model versions carry the promotion gate's decision

Follow-latest deployment targets resolve to the newest promoted version; versions published
before the gate existed were deployed as they came, so they count as promoted.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-12 06:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("models") as batch:
        batch.add_column(sa.Column("promoted", sa.Boolean(), server_default=sa.true(), nullable=False))
        batch.add_column(sa.Column("promotion", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("models") as batch:
        batch.drop_column("promotion")
        batch.drop_column("promoted")
