"""Hub settings: where metadata and blobs live."""

from __future__ import annotations

from typing import Self

from pydantic import Field, field_validator, model_validator

from visionloop.lib.images import ImageLimitSettings
from visionloop.runtime.config import ServiceSettings


class LoopSettings(ServiceSettings, ImageLimitSettings):
    bootstrap_project: str = Field(
        "",
        alias="VISIONLOOP_BOOTSTRAP_PROJECT",
        description="organization/project created at start-up when missing (visionloop up sets demo/demo).",
    )
    public_address: str = Field(
        "",
        alias="VISIONLOOP_PUBLIC_ADDRESS",
        description="Address nodes use to reach the hub, written into model.json as host (default: the bound address).",
    )
    database_url: str = Field(
        "",
        alias="DATABASE_URL",
        description="SQLAlchemy URL: sqlite:///path.db (embedded) or postgresql://... (cluster); "
        "empty uses SQLite in the data folder.",
        repr=False,
    )
    s3_endpoint: str = Field(
        "", alias="S3_ENDPOINT", description="S3-compatible endpoint URL; empty keeps blobs in the data folder."
    )
    s3_bucket: str = Field("", alias="S3_BUCKET", description="Bucket for images, models and the Triton repository.")
    s3_access_key_id: str = Field("", alias="S3_ACCESS_KEY_ID", description="S3 access key id.", repr=False)
    s3_secret_access_key: str = Field("", alias="S3_SECRET_ACCESS_KEY", description="S3 secret key.", repr=False)
    s3_region: str = Field("us-east-1", alias="S3_REGION", description="S3 region.")
    hub_replicas: int = Field(
        1,
        alias="VISIONLOOP_HUB_REPLICAS",
        ge=1,
        description="Hub processes that may run at once on this database and object store (the Helm chart "
        "sets it to loop.replicas plus one, for the hub an upgrade starts before it stops an old one). "
        "With more than one, a failed upload leaves its blob to the blob sweep instead of deleting it "
        "(another hub may be storing the same bytes), and an upload's row transaction checks that no "
        "hub's sweep deleted its bytes after its put.",
    )
    blob_sweep_seconds: float = Field(
        3600.0,
        alias="VISIONLOOP_BLOB_SWEEP_SECONDS",
        ge=0,
        description="How often the hub deletes image blobs that no image row references (left by a crash "
        "between an upload's put and its commit, or by a cancelled upload); 0 turns the sweep off.",
    )
    blob_sweep_grace_seconds: float = Field(
        3600.0,
        alias="VISIONLOOP_BLOB_SWEEP_GRACE_SECONDS",
        ge=0,
        description="How long a blob without a row is left alone before the sweep deletes it: longer than "
        "any upload takes from its put to its commit.",
    )

    promotion_tolerance: float = Field(
        0.0,
        alias="VISIONLOOP_PROMOTION_TOLERANCE",
        ge=0.0,
        le=1.0,
        description="How much lower a new version's held-out mAP@0.5 may be than the newest promoted "
        "version's, measured on the same images, for the promotion gate to let follow-latest deployment "
        "targets deploy it (0: never a lower one). Versions that fail are published but held back.",
    )

    @field_validator("database_url")
    @classmethod
    def _supported_database(cls, value: str) -> str:
        if value and not value.startswith(("sqlite://", "postgresql://", "postgresql+psycopg://")):
            raise ValueError("must start with sqlite:// or postgresql:// (e.g. postgresql://user@db:5432/visionloop)")
        return value

    @field_validator("s3_endpoint")
    @classmethod
    def _url(cls, value: str) -> str:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL, e.g. http://minio:9000")
        return value

    @model_validator(mode="after")
    def _bucket_with_endpoint(self) -> Self:
        if self.s3_endpoint and not self.s3_bucket:
            raise ValueError("S3_BUCKET must be set when S3_ENDPOINT is set")
        return self
