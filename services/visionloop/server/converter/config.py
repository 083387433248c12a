"""Converter settings."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Self

from pydantic import Field, field_validator, model_validator

from visionloop.lib.images import ImageLimitSettings
from visionloop.runtime.config import PeerSettings, ServiceSettings
from visionloop.server.converter.triton_s3 import triton_s3_url

GIB = 1024**3
# Every format this converter can produce (see conversions.TARGETS for how).
KNOWN_TARGETS = ("onnx", "onnx_fp16", "onnx_int8", "triton_python", "triton_onnx")


class Int8Mode(StrEnum):
    DYNAMIC = "dynamic"  # weights quantized ahead, activations at run time: no calibration images needed
    STATIC = "static"  # weights and activations quantized ahead, calibrated on the project's images


class ConverterSettings(ServiceSettings, PeerSettings, ImageLimitSettings):
    target_formats: str = Field(
        "onnx,triton_python",
        alias="CONVERTER_TARGET_FORMATS",
        description=f"Comma-separated formats every model gets, in order; known: {', '.join(KNOWN_TARGETS)}.",
    )
    all_projects: bool = Field(
        True,
        alias="CONVERTER_ALL_PROJECTS",
        description="Convert the models of every project; false: only LOOP_ORGANIZATION/LOOP_PROJECT.",
    )
    max_attempts: int = Field(
        3,
        alias="CONVERTER_MAX_ATTEMPTS",
        ge=1,
        le=20,
        description="Attempts per conversion before it is failed (the hub's own limit applies as well).",
    )
    lease_seconds: float = Field(
        600.0,
        alias="CONVERTER_LEASE_SECONDS",
        ge=1,
        le=86_400,
        description="How long a claimed conversion stays this converter's before another replica may take it.",
    )
    sweep_seconds: float = Field(
        60.0,
        alias="CONVERTER_SWEEP_SECONDS",
        ge=0.1,
        description="Backstop re-check for conversions whose lease expired (the hub sends no event for that); "
        "new work arrives through the hub's events.",
    )
    retry_backoff_seconds: float = Field(
        2.0,
        alias="CONVERTER_RETRY_BACKOFF_SECONDS",
        ge=0,
        le=600,
        description="Pause after a failed conversion before claiming again (doubles per attempt).",
    )
    opset: int = Field(17, alias="CONVERTER_OPSET", ge=7, le=99, description="ONNX opset of PyTorch exports.")
    fp32_max_abs_diff: float = Field(
        1e-4,
        alias="CONVERTER_FP32_MAX_ABS_DIFF",
        gt=0,
        description="FP32 conversions publish only when no output value moves by more than this.",
    )
    fp16_max_map_drop: float = Field(
        0.01,
        alias="CONVERTER_FP16_MAX_MAP_DROP",
        ge=0,
        le=1,
        description="FP16 conversions are refused when mAP@0.5 on the validation images drops by more.",
    )
    int8_max_map_drop: float = Field(
        0.03,
        alias="CONVERTER_INT8_MAX_MAP_DROP",
        ge=0,
        le=1,
        description="INT8 conversions are refused when mAP@0.5 on the validation images drops by more.",
    )
    int8_mode: Int8Mode = Field(
        Int8Mode.DYNAMIC,
        alias="CONVERTER_INT8_MODE",
        description="dynamic (no calibration) or static (calibrated on the project's images).",
    )
    calibration_images: int = Field(
        32, alias="CONVERTER_CALIBRATION_IMAGES", ge=1, le=10_000, description="Images static INT8 calibrates on."
    )
    validation_images: int = Field(
        100,
        alias="CONVERTER_VALIDATION_IMAGES",
        ge=0,
        le=10_000,
        description="Most validation images (complete, annotated) the mAP change is measured on.",
    )
    parity_samples: int = Field(
        4, alias="CONVERTER_PARITY_SAMPLES", ge=1, le=256, description="Sample inputs both models run on."
    )
    triton_max_batch_size: int = Field(
        16, alias="CONVERTER_TRITON_MAX_BATCH_SIZE", ge=1, le=1024, description="Triton entries' max_batch_size."
    )
    triton_instances: int = Field(
        1, alias="CONVERTER_TRITON_INSTANCES", ge=1, le=64, description="Triton entries' instances per device."
    )
    triton_max_queue_delay_us: int = Field(
        100,
        alias="CONVERTER_TRITON_MAX_QUEUE_DELAY_US",
        ge=0,
        le=1_000_000,
        description="How long Triton's dynamic batcher may hold a request to fill a batch.",
    )
    triton_onnx_gpu: bool = Field(
        True, alias="CONVERTER_TRITON_ONNX_GPU", description="triton_onnx entries run on GPUs (KIND_GPU), else CPUs."
    )
    tensorrt: bool = Field(
        False, alias="CONVERTER_TENSORRT", description="triton_onnx entries get the TensorRT accelerator block."
    )
    tensorrt_precision: str = Field(
        "FP16", alias="CONVERTER_TENSORRT_PRECISION", description="TensorRT precision_mode: FP16 or FP32."
    )
    triton_model_repository: Path | None = Field(
        None,
        alias="TRITON_MODEL_REPOSITORY",
        description="Folder of the Triton model repository without S3 (default: <data dir>/triton).",
    )
    triton_prefix: str = Field(
        "triton", alias="CONVERTER_TRITON_PREFIX", description="Key prefix of the Triton model repository in S3."
    )
    max_uncompressed_bytes: int = Field(
        4 * GIB,
        alias="CONVERTER_MAX_UNCOMPRESSED_BYTES",
        ge=1024,
        description="Model zips that expand to more are refused.",
    )
    s3_endpoint: str = Field(
        "", alias="S3_ENDPOINT", description="S3-compatible endpoint URL; empty keeps the repository in a folder."
    )
    s3_bucket: str = Field("", alias="S3_BUCKET", description="Bucket holding the Triton model repository.")
    s3_access_key_id: str = Field("", alias="S3_ACCESS_KEY_ID", description="S3 access key id.", repr=False)
    s3_secret_access_key: str = Field("", alias="S3_SECRET_ACCESS_KEY", description="S3 secret key.", repr=False)
    s3_region: str = Field("us-east-1", alias="S3_REGION", description="S3 region.")

    def targets(self) -> list[str]:
        return list(dict.fromkeys(t.strip() for t in self.target_formats.split(",") if t.strip()))

    @field_validator("target_formats")
    @classmethod
    def _known_targets(cls, value: str) -> str:
        names = [t.strip() for t in value.split(",") if t.strip()]
        if not names:
            raise ValueError(f"name at least one format, e.g. onnx; known: {', '.join(KNOWN_TARGETS)}")
        unknown = [t for t in names if t not in KNOWN_TARGETS]
        if unknown:
            raise ValueError(f"unknown format {unknown[0]!r}; known: {', '.join(KNOWN_TARGETS)}")
        return value

    @field_validator("tensorrt_precision")
    @classmethod
    def _precision(cls, value: str) -> str:
        if value.upper() not in {"FP16", "FP32"}:
            raise ValueError("must be FP16 or FP32")
        return value.upper()

    @field_validator("triton_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        value = value.strip("/")
        if not value or any(part in {"", ".", ".."} for part in value.split("/")):
            raise ValueError("must be a key prefix such as triton or models/triton")
        return value

    @field_validator("s3_endpoint")
    @classmethod
    def _endpoint_url(cls, value: str) -> str:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL, e.g. http://minio:9000")
        return value

    @model_validator(mode="after")
    def _bucket_given(self) -> Self:
        if self.s3_endpoint and not self.s3_bucket:
            raise ValueError("S3_BUCKET must be set when S3_ENDPOINT is set")
        if self.s3_endpoint:  # the repository Triton is started on must be one it can read
            triton_s3_url(self.s3_endpoint, self.s3_bucket, self.triton_prefix)
        return self
