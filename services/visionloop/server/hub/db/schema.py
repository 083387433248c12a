"""Tables of the hub. Portable across SQLite and PostgreSQL; changed only through migrations.

Structured status that only the hub stores and returns (training specs and statuses, node
status) is kept as serialized protobuf: one source of truth for its shape, the contracts.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.sql.expression import false, true

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite keeps no zone, so it is restored on read)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime stored; use datetime.now(UTC)")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Project(Base):
    __tablename__ = "projects"
    __table_args__ = (UniqueConstraint("organization", "name", name="uq_projects_org_name"),)

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    organization: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(64))
    display_name: Mapped[str] = mapped_column(String(256), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    create_time: Mapped[datetime] = mapped_column(UtcDateTime())


class Category(Base):
    __tablename__ = "categories"
    __table_args__ = (UniqueConstraint("project_pk", "name", name="uq_categories_project_name"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    project_pk: Mapped[int] = mapped_column(ForeignKey("projects.pk", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    type: Mapped[int] = mapped_column(Integer)
    color: Mapped[str] = mapped_column(String(16), default="")
    hotkey: Mapped[str] = mapped_column(String(8), default="")
    point_radius: Mapped[float] = mapped_column(Float, default=0.0)
    create_time: Mapped[datetime] = mapped_column(UtcDateTime())


class Image(Base):
    __tablename__ = "images"
    __table_args__ = (
        UniqueConstraint("project_pk", "sha256", name="uq_images_project_sha256"),
        Index("ix_images_project_upload", "project_pk", "upload_time", "pk"),
        Index("ix_images_project_priority", "project_pk", "priority", "pk"),
        Index("ix_images_project_state", "project_pk", "state"),
        Index("ix_images_project_camera", "project_pk", "camera_id"),
        Index("ix_images_sha256", "sha256"),  # "does a row of any project use this blob?" (failed uploads, sweep)
    )

    pk: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    project_pk: Mapped[int] = mapped_column(ForeignKey("projects.pk", ondelete="CASCADE"))
    sha256: Mapped[str] = mapped_column(String(64))
    camera_id: Mapped[str] = mapped_column(String(128), default="")
    source: Mapped[str] = mapped_column(String(256), default="")
    create_time: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    upload_time: Mapped[datetime] = mapped_column(UtcDateTime())
    state: Mapped[int] = mapped_column(Integer)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    content_type: Mapped[str] = mapped_column(String(32))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    priority: Mapped[float] = mapped_column(Float, default=0.0)
    annotation_count: Mapped[int] = mapped_column(Integer, default=0)
    detection_count: Mapped[int] = mapped_column(Integer, default=0)


class ImageTag(Base):
    __tablename__ = "image_tags"
    __table_args__ = (Index("ix_image_tags_tag", "tag", "image_pk"),)

    image_pk: Mapped[int] = mapped_column(ForeignKey("images.pk", ondelete="CASCADE"), primary_key=True)
    tag: Mapped[str] = mapped_column(String(128), primary_key=True)


class Annotation(Base):
    __tablename__ = "annotations"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    image_pk: Mapped[int] = mapped_column(ForeignKey("images.pk", ondelete="CASCADE"), index=True)
    category_id: Mapped[str] = mapped_column(ForeignKey("categories.id", ondelete="CASCADE"), index=True)
    shape: Mapped[bytes] = mapped_column(LargeBinary)  # serialized visionloop.common.v1.Shape
    crowd: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())  # COCO iscrowd
    creator_person: Mapped[str] = mapped_column(String(128), default="")
    creator_model_version: Mapped[str] = mapped_column(String(32), default="")
    create_time: Mapped[datetime] = mapped_column(UtcDateTime())
    update_time: Mapped[datetime] = mapped_column(UtcDateTime())


class Detection(Base):
    """Model detections, kept apart from human annotations; one row per detection."""

    __tablename__ = "detections"
    __table_args__ = (Index("ix_detections_image_version", "image_pk", "model_version"),)

    pk: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    image_pk: Mapped[int] = mapped_column(ForeignKey("images.pk", ondelete="CASCADE"))
    model_version: Mapped[str] = mapped_column(String(32))
    kind: Mapped[int] = mapped_column(Integer)  # CategoryType
    category_id: Mapped[str] = mapped_column(String(36))
    category_name: Mapped[str] = mapped_column(String(128))
    confidence: Mapped[float] = mapped_column(Float)
    payload: Mapped[bytes] = mapped_column(LargeBinary)  # serialized Box/Point/SegmentationDetection


class Model(Base):
    __tablename__ = "models"
    __table_args__ = (UniqueConstraint("project_pk", "major", "minor", name="uq_models_project_version"),)

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(36), unique=True)
    project_pk: Mapped[int] = mapped_column(ForeignKey("projects.pk", ondelete="CASCADE"), index=True)
    major: Mapped[int] = mapped_column(Integer)
    minor: Mapped[int] = mapped_column(Integer)
    base_model_version: Mapped[str] = mapped_column(String(32), default="")
    training_id: Mapped[str] = mapped_column(String(36), default="")
    variant: Mapped[str] = mapped_column(String(64), default="")
    comment: Mapped[str] = mapped_column(Text, default="")
    metrics: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)  # serialized ModelMetrics
    # The promotion gate's decision: whether follow-latest targets may deploy it (versions published
    # before the gate existed count as promoted), and the decision's record (serialized Promotion).
    promoted: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    promotion: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    create_time: Mapped[datetime] = mapped_column(UtcDateTime())

    @property
    def version(self) -> str:
        return f"{self.major}.{self.minor}"


class ModelArtifact(Base):
    """One format of a model version: a zip in the object store plus its completed model.json."""

    __tablename__ = "model_artifacts"

    model_pk: Mapped[int] = mapped_column(ForeignKey("models.pk", ondelete="CASCADE"), primary_key=True)
    format: Mapped[str] = mapped_column(String(64), primary_key=True)
    blob_key: Mapped[str] = mapped_column(String(512))
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    model_json: Mapped[str] = mapped_column(Text)
    create_time: Mapped[datetime] = mapped_column(UtcDateTime())


class Deployment(Base):
    __tablename__ = "deployments"

    project_pk: Mapped[int] = mapped_column(ForeignKey("projects.pk", ondelete="CASCADE"), primary_key=True)
    policy: Mapped[int] = mapped_column(Integer)
    pinned_version: Mapped[str] = mapped_column(String(32), default="")
    revision: Mapped[int] = mapped_column(Integer, default=0)
    update_time: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_by: Mapped[str] = mapped_column(String(128), default="")


class DeploymentHistory(Base):
    """Every target a project had, so rollback can restore the previous one."""

    __tablename__ = "deployment_history"

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    project_pk: Mapped[int] = mapped_column(ForeignKey("projects.pk", ondelete="CASCADE"), index=True)
    revision: Mapped[int] = mapped_column(Integer)
    policy: Mapped[int] = mapped_column(Integer)
    pinned_version: Mapped[str] = mapped_column(String(32), default="")
    time: Mapped[datetime] = mapped_column(UtcDateTime())


class Training(Base):
    __tablename__ = "trainings"
    __table_args__ = (
        UniqueConstraint("project_pk", "number", name="uq_trainings_project_number"),
        Index("ix_trainings_phase_create", "phase", "create_time"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    project_pk: Mapped[int] = mapped_column(ForeignKey("projects.pk", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    spec: Mapped[bytes] = mapped_column(LargeBinary)  # serialized TrainingSpec
    model_variant: Mapped[str] = mapped_column(String(64), default="")
    phase: Mapped[int] = mapped_column(Integer)
    status: Mapped[bytes] = mapped_column(LargeBinary, default=b"")  # serialized TrainingStatus
    trainer_node_id: Mapped[str] = mapped_column(String(128), default="")
    lease_expire_time: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    stop_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    abort_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    result_model_version: Mapped[str] = mapped_column(String(32), default="")
    create_time: Mapped[datetime] = mapped_column(UtcDateTime())
    end_time: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)


class Node(Base):
    __tablename__ = "nodes"

    node_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    name: Mapped[str] = mapped_column(String(256))
    type: Mapped[int] = mapped_column(Integer)
    status: Mapped[bytes] = mapped_column(LargeBinary)  # serialized NodeStatus as last reported
    register_time: Mapped[datetime] = mapped_column(UtcDateTime())
    last_heartbeat_time: Mapped[datetime] = mapped_column(UtcDateTime())


class Conversion(Base):
    __tablename__ = "conversions"
    __table_args__ = (UniqueConstraint("model_pk", "target_format", name="uq_conversions_model_target"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    model_pk: Mapped[int] = mapped_column(ForeignKey("models.pk", ondelete="CASCADE"), index=True)
    source_format: Mapped[str] = mapped_column(String(64))
    target_format: Mapped[str] = mapped_column(String(64))
    state: Mapped[int] = mapped_column(Integer)  # visionloop.converter.v1.ConversionState
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    node_id: Mapped[str] = mapped_column(String(128), default="")
    lease_expire_time: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    create_time: Mapped[datetime] = mapped_column(UtcDateTime())
    update_time: Mapped[datetime] = mapped_column(UtcDateTime())


class Event(Base):
    """The event log behind WatchEvents; ``seq`` is the cursor."""

    __tablename__ = "events"

    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    type: Mapped[int] = mapped_column(Integer)
    organization: Mapped[str] = mapped_column(String(64), default="")
    project: Mapped[str] = mapped_column(String(64), default="")
    subject: Mapped[str] = mapped_column(String(256), default="")
    detail: Mapped[str] = mapped_column(String(256), default="")
    time: Mapped[datetime] = mapped_column(UtcDateTime())


class SweptBlob(Base):
    """The image blobs the sweep deleted while several hub replicas ran (see ``loop/blob_fence.py``)."""

    __tablename__ = "swept_blobs"
    __table_args__ = (Index("ix_swept_blobs_sha256", "sha256", "seq"),)

    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    sha256: Mapped[str] = mapped_column(String(64))
    time: Mapped[datetime] = mapped_column(UtcDateTime())
