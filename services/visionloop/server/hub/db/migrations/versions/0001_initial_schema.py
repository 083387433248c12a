"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-20 23:34:28.775799
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "events",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("type", sa.Integer(), nullable=False),
        sa.Column("organization", sa.String(length=64), nullable=False),
        sa.Column("project", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(length=256), nullable=False),
        sa.Column("detail", sa.String(length=256), nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_events")),
    )
    op.create_table(
        "nodes",
        sa.Column("node_id", sa.String(length=128), nullable=False),
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("type", sa.Integer(), nullable=False),
        sa.Column("status", sa.LargeBinary(), nullable=False),
        sa.Column("register_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_heartbeat_time", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("node_id", name=op.f("pk_nodes")),
    )
    op.create_table(
        "projects",
        sa.Column("pk", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("organization", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("display_name", sa.String(length=256), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_projects")),
        sa.UniqueConstraint("organization", "name", name="uq_projects_org_name"),
    )
    op.create_table(
        "categories",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("project_pk", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("type", sa.Integer(), nullable=False),
        sa.Column("color", sa.String(length=16), nullable=False),
        sa.Column("hotkey", sa.String(length=8), nullable=False),
        sa.Column("point_radius", sa.Float(), nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_pk"], ["projects.pk"], name=op.f("fk_categories_project_pk_projects"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_categories")),
        sa.UniqueConstraint("project_pk", "name", name="uq_categories_project_name"),
    )
    with op.batch_alter_table("categories", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_categories_project_pk"), ["project_pk"], unique=False)

    op.create_table(
        "deployment_history",
        sa.Column("pk", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("project_pk", sa.Integer(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("policy", sa.Integer(), nullable=False),
        sa.Column("pinned_version", sa.String(length=32), nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_pk"], ["projects.pk"], name=op.f("fk_deployment_history_project_pk_projects"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_deployment_history")),
    )
    with op.batch_alter_table("deployment_history", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_deployment_history_project_pk"), ["project_pk"], unique=False)

    op.create_table(
        "deployments",
        sa.Column("project_pk", sa.Integer(), nullable=False),
        sa.Column("policy", sa.Integer(), nullable=False),
        sa.Column("pinned_version", sa.String(length=32), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(length=128), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_pk"], ["projects.pk"], name=op.f("fk_deployments_project_pk_projects"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("project_pk", name=op.f("pk_deployments")),
    )
    op.create_table(
        "images",
        sa.Column("pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("project_pk", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("camera_id", sa.String(length=128), nullable=False),
        sa.Column("source", sa.String(length=256), nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("upload_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("state", sa.Integer(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("content_type", sa.String(length=32), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("priority", sa.Float(), nullable=False),
        sa.Column("annotation_count", sa.Integer(), nullable=False),
        sa.Column("detection_count", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_pk"], ["projects.pk"], name=op.f("fk_images_project_pk_projects"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_images")),
        sa.UniqueConstraint("project_pk", "sha256", name="uq_images_project_sha256"),
    )
    with op.batch_alter_table("images", schema=None) as batch_op:
        batch_op.create_index("ix_images_project_camera", ["project_pk", "camera_id"], unique=False)
        batch_op.create_index("ix_images_project_priority", ["project_pk", "priority", "pk"], unique=False)
        batch_op.create_index("ix_images_project_state", ["project_pk", "state"], unique=False)
        batch_op.create_index("ix_images_project_upload", ["project_pk", "upload_time", "pk"], unique=False)

    op.create_table(
        "models",
        sa.Column("pk", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("project_pk", sa.Integer(), nullable=False),
        sa.Column("major", sa.Integer(), nullable=False),
        sa.Column("minor", sa.Integer(), nullable=False),
        sa.Column("base_model_version", sa.String(length=32), nullable=False),
        sa.Column("training_id", sa.String(length=36), nullable=False),
        sa.Column("variant", sa.String(length=64), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("metrics", sa.LargeBinary(), nullable=True),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_pk"], ["projects.pk"], name=op.f("fk_models_project_pk_projects"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_models")),
        sa.UniqueConstraint("id", name=op.f("uq_models_id")),
        sa.UniqueConstraint("project_pk", "major", "minor", name="uq_models_project_version"),
    )
    with op.batch_alter_table("models", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_models_project_pk"), ["project_pk"], unique=False)

    op.create_table(
        "trainings",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("project_pk", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("spec", sa.LargeBinary(), nullable=False),
        sa.Column("model_variant", sa.String(length=64), nullable=False),
        sa.Column("phase", sa.Integer(), nullable=False),
        sa.Column("status", sa.LargeBinary(), nullable=False),
        sa.Column("trainer_node_id", sa.String(length=128), nullable=False),
        sa.Column("lease_expire_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("stop_requested", sa.Boolean(), nullable=False),
        sa.Column("abort_requested", sa.Boolean(), nullable=False),
        sa.Column("result_model_version", sa.String(length=32), nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("end_time", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["project_pk"], ["projects.pk"], name=op.f("fk_trainings_project_pk_projects"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_trainings")),
        sa.UniqueConstraint("project_pk", "number", name="uq_trainings_project_number"),
    )
    with op.batch_alter_table("trainings", schema=None) as batch_op:
        batch_op.create_index("ix_trainings_phase_create", ["phase", "create_time"], unique=False)

    op.create_table(
        "annotations",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("image_pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("category_id", sa.String(length=36), nullable=False),
        sa.Column("shape", sa.LargeBinary(), nullable=False),
        sa.Column("creator_person", sa.String(length=128), nullable=False),
        sa.Column("creator_model_version", sa.String(length=32), nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["category_id"], ["categories.id"], name=op.f("fk_annotations_category_id_categories"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["image_pk"], ["images.pk"], name=op.f("fk_annotations_image_pk_images"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_annotations")),
    )
    with op.batch_alter_table("annotations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_annotations_category_id"), ["category_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_annotations_image_pk"), ["image_pk"], unique=False)

    op.create_table(
        "conversions",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("model_pk", sa.Integer(), nullable=False),
        sa.Column("source_format", sa.String(length=64), nullable=False),
        sa.Column("target_format", sa.String(length=64), nullable=False),
        sa.Column("state", sa.Integer(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("node_id", sa.String(length=128), nullable=False),
        sa.Column("lease_expire_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["model_pk"], ["models.pk"], name=op.f("fk_conversions_model_pk_models"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_conversions")),
        sa.UniqueConstraint("model_pk", "target_format", name="uq_conversions_model_target"),
    )
    with op.batch_alter_table("conversions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_conversions_model_pk"), ["model_pk"], unique=False)

    op.create_table(
        "detections",
        sa.Column("pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("image_pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("model_version", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.Integer(), nullable=False),
        sa.Column("category_id", sa.String(length=36), nullable=False),
        sa.Column("category_name", sa.String(length=128), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["image_pk"], ["images.pk"], name=op.f("fk_detections_image_pk_images"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_detections")),
    )
    with op.batch_alter_table("detections", schema=None) as batch_op:
        batch_op.create_index("ix_detections_image_version", ["image_pk", "model_version"], unique=False)

    op.create_table(
        "image_tags",
        sa.Column("image_pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("tag", sa.String(length=128), nullable=False),
        sa.ForeignKeyConstraint(
            ["image_pk"], ["images.pk"], name=op.f("fk_image_tags_image_pk_images"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("image_pk", "tag", name=op.f("pk_image_tags")),
    )
    with op.batch_alter_table("image_tags", schema=None) as batch_op:
        batch_op.create_index("ix_image_tags_tag", ["tag", "image_pk"], unique=False)

    op.create_table(
        "model_artifacts",
        sa.Column("model_pk", sa.Integer(), nullable=False),
        sa.Column("format", sa.String(length=64), nullable=False),
        sa.Column("blob_key", sa.String(length=512), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("model_json", sa.Text(), nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["model_pk"], ["models.pk"], name=op.f("fk_model_artifacts_model_pk_models"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("model_pk", "format", name=op.f("pk_model_artifacts")),
    )


def downgrade() -> None:

    op.drop_table("model_artifacts")
    with op.batch_alter_table("image_tags", schema=None) as batch_op:
        batch_op.drop_index("ix_image_tags_tag")

    op.drop_table("image_tags")
    with op.batch_alter_table("detections", schema=None) as batch_op:
        batch_op.drop_index("ix_detections_image_version")

    op.drop_table("detections")
    with op.batch_alter_table("conversions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_conversions_model_pk"))

    op.drop_table("conversions")
    with op.batch_alter_table("annotations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_annotations_image_pk"))
        batch_op.drop_index(batch_op.f("ix_annotations_category_id"))

    op.drop_table("annotations")
    with op.batch_alter_table("trainings", schema=None) as batch_op:
        batch_op.drop_index("ix_trainings_phase_create")

    op.drop_table("trainings")
    with op.batch_alter_table("models", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_models_project_pk"))

    op.drop_table("models")
    with op.batch_alter_table("images", schema=None) as batch_op:
        batch_op.drop_index("ix_images_project_upload")
        batch_op.drop_index("ix_images_project_state")
        batch_op.drop_index("ix_images_project_priority")
        batch_op.drop_index("ix_images_project_camera")

    op.drop_table("images")
    op.drop_table("deployments")
    with op.batch_alter_table("deployment_history", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_deployment_history_project_pk"))

    op.drop_table("deployment_history")
    with op.batch_alter_table("categories", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_categories_project_pk"))

    op.drop_table("categories")
    op.drop_table("projects")
    op.drop_table("nodes")
    op.drop_table("events")
