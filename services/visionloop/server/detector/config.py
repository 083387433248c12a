"""Detector settings: which hub, which backend, active-learning thresholds."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Literal, Self

from pydantic import Field, field_validator, model_validator

from visionloop.runtime.config import PeerSettings, ServiceSettings


class Backend(StrEnum):
    ONNXRUNTIME = "onnxruntime"
    TRITON = "triton"


class DetectorSettings(ServiceSettings, PeerSettings):
    backend: Backend = Field(
        Backend.ONNXRUNTIME, alias="DETECTOR_BACKEND", description="onnxruntime (in-process) or triton."
    )
    triton_url: str = Field("", alias="TRITON_URL", description="Triton gRPC address host:port (backend triton).")
    min_uncertain_threshold: float = Field(
        0.3, alias="MIN_UNCERTAIN_THRESHOLD", ge=0, le=1, description="Lowest confidence that counts as uncertain."
    )
    max_uncertain_threshold: float = Field(
        0.6, alias="MAX_UNCERTAIN_THRESHOLD", ge=0, le=1, description="Highest confidence that counts as uncertain."
    )
    # Upload filter (see visionloop.server.detector.upload_filter); limits are per camera id.
    upload_similarity_memory_seconds: float = Field(
        60.0,
        alias="UPLOAD_SIMILARITY_MEMORY_SECONDS",
        ge=0,
        description="How long an uploaded observation suppresses similar ones from the same camera (0: no memory).",
    )
    upload_similarity_iou: float = Field(
        0.5,
        alias="UPLOAD_SIMILARITY_IOU",
        ge=0,
        le=1,
        description="Box IoU at or above which two observations of one category count as similar.",
    )
    upload_point_radius_px: float = Field(
        20.0,
        alias="UPLOAD_POINT_RADIUS_PX",
        ge=0,
        description="Distance in pixels within which two points of one category count as similar.",
    )
    upload_max_detections: int = Field(
        50,
        alias="UPLOAD_MAX_DETECTIONS",
        ge=1,
        description="A frame with more detections than this is uploaded (too_many_detections).",
    )
    upload_random_probability: float = Field(
        0.0,
        alias="UPLOAD_RANDOM_PROBABILITY",
        ge=0,
        le=1,
        description="Chance that a filtered frame is sampled at random (0: off).",
    )
    upload_close_to_threshold_margin: float = Field(
        0.05,
        alias="UPLOAD_CLOSE_TO_THRESHOLD_MARGIN",
        ge=0,
        le=1,
        description="Confidences this far below MIN_UNCERTAIN_THRESHOLD are sampled (0: off).",
    )
    upload_sample_max_per_minute: int = Field(
        1,
        alias="UPLOAD_SAMPLE_MAX_PER_MINUTE",
        ge=0,
        description="Most sampled (random, close_to_threshold) uploads per camera per minute.",
    )
    upload_sample_max_per_hour: int = Field(
        10,
        alias="UPLOAD_SAMPLE_MAX_PER_HOUR",
        ge=0,
        description="Most sampled (random, close_to_threshold) uploads per camera per hour.",
    )
    upload_max_per_minute: int = Field(
        30, alias="UPLOAD_MAX_PER_MINUTE", ge=1, description="Most automatic uploads per camera per minute."
    )
    upload_max_per_hour: int = Field(
        600, alias="UPLOAD_MAX_PER_HOUR", ge=1, description="Most automatic uploads per camera per hour."
    )

    model_paths: str = Field(
        "",
        alias="DETECTOR_MODEL_PATHS",
        description="Extra models served as they are, as name=path pairs (a model zip or a folder with "
        "model.json and model.onnx), comma-separated; e.g. your own YOLOv8 export.",
    )
    default_model: str = Field(
        "", alias="DETECTOR_DEFAULT_MODEL", description="Model answering requests that name none (LOOP_PROJECT)."
    )
    follow_loop: bool | None = Field(
        None,
        alias="DETECTOR_FOLLOW_LOOP",
        description="Serve LOOP_PROJECT's deployed model from the hub (default: unless DETECTOR_MODEL_PATHS is set).",
    )
    max_batch_size: int = Field(
        16, alias="DETECTOR_MAX_BATCH_SIZE", ge=1, le=256, description="Most frames per backend call."
    )
    max_batch_wait_ms: float = Field(
        2.0,
        alias="DETECTOR_MAX_BATCH_WAIT_MS",
        ge=0,
        le=100,
        description="How long a frame may wait for others to share its backend call.",
    )
    queue_budget_ms: float = Field(
        50.0,
        alias="DETECTOR_QUEUE_BUDGET_MS",
        gt=0,
        le=60_000,
        description="Admission control: a model admits a frame only while the frames it holds take less than this "
        "to get through (by its measured time per frame); beyond, frames are refused at once with "
        "RESOURCE_EXHAUSTED instead of answered late. The delay a burst may queue for while the model drains "
        "within DETECTOR_QUEUE_INTERVAL_MS; 50 ms: one and a half frames of a 30 fps camera.",
    )
    queue_target_ms: float | None = Field(
        None,
        alias="DETECTOR_QUEUE_TARGET_MS",
        gt=0,
        le=60_000,
        description="Admission control under overload: a model that has held frames without a break for "
        "DETECTOR_QUEUE_INTERVAL_MS admits only what it gets through in this (at most DETECTOR_QUEUE_BUDGET_MS) "
        "until it holds nothing and has refused nothing for an interval. Default: half the budget (25 ms), which "
        "on a 2-core CPU at 15 ms a frame admits 2 frames under overload and kept accepted frames' p99 at 16x "
        "the detector's capacity within about 3x their p50 at half of it; the budget's 4 frames did not "
        "(benchmarks/admission_benchmark.py).",
    )
    queue_interval_ms: float = Field(
        100.0,
        alias="DETECTOR_QUEUE_INTERVAL_MS",
        gt=0,
        le=60_000,
        description="How long a model holds frames without a break before it counts as overloaded "
        "(DETECTOR_QUEUE_TARGET_MS applies): a queue that drains within this is a burst, not an overload; "
        "100 ms: a few batch calls.",
    )
    max_queued_batches: int = Field(
        4,
        alias="DETECTOR_MAX_QUEUED_BATCHES",
        ge=1,
        le=64,
        description="Most frames a model holds at once, in batches of DETECTOR_MAX_BATCH_SIZE, whatever its "
        "measured speed says.",
    )
    max_image_bytes: int = Field(
        32 * 1024 * 1024, alias="DETECTOR_MAX_IMAGE_BYTES", ge=1024, description="Largest image accepted."
    )
    max_image_pixels: int = Field(
        50_000_000, alias="DETECTOR_MAX_IMAGE_PIXELS", ge=1, description="Largest image accepted, in pixels."
    )
    stream_depth: int = Field(
        8, alias="DETECTOR_STREAM_DEPTH", ge=1, le=128, description="Frames of one stream processed at once."
    )
    triton_shared_memory: Literal["auto", "on", "off"] = Field(
        "auto",
        alias="TRITON_SHARED_MEMORY",
        description="Send frames to Triton through system shared memory: auto (when TRITON_URL is a loopback "
        "address, i.e. Triton shares this machine's /dev/shm, e.g. a sidecar), on, or off (inside the requests).",
    )
    triton_model_repository: Path | None = Field(
        None,
        alias="TRITON_MODEL_REPOSITORY",
        description="Model repository the detector writes its models into and the Triton server (explicit "
        "model control) loads them from: one folder both see, e.g. a shared volume (backend triton).",
    )

    triton_lease_seconds: float = Field(
        60.0,
        alias="TRITON_LEASE_SECONDS",
        ge=0.5,
        le=3600,
        description="How long a killed detector's hold on a Triton model outlives it: a model no detector "
        "holds is unloaded within about 1.4x this (backend triton).",
    )

    def follows_loop(self) -> bool:
        return self.follow_loop if self.follow_loop is not None else not self.model_paths.strip()

    def model_path_pairs(self) -> dict[str, Path]:
        """DETECTOR_MODEL_PATHS as name -> path."""
        pairs: dict[str, Path] = {}
        for item in filter(None, (p.strip() for p in self.model_paths.split(","))):
            name, _, path = item.partition("=")
            pairs[name.strip()] = Path(path.strip())
        return pairs

    @field_validator("model_paths")
    @classmethod
    def _model_paths_exist(cls, value: str) -> str:
        for item in filter(None, (p.strip() for p in value.split(","))):
            name, sep, path = item.partition("=")
            if not sep or not name.strip() or not path.strip():
                raise ValueError("expected name=path pairs, e.g. weeds=/models/weeds.zip")
            if not Path(path.strip()).exists():
                raise ValueError(f"model path {path.strip()} does not exist")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.min_uncertain_threshold > self.max_uncertain_threshold:
            raise ValueError(
                f"MIN_UNCERTAIN_THRESHOLD ({self.min_uncertain_threshold}) must not exceed "
                f"MAX_UNCERTAIN_THRESHOLD ({self.max_uncertain_threshold})"
            )
        if self.queue_budget_ms <= self.max_batch_wait_ms:
            raise ValueError(
                f"DETECTOR_QUEUE_BUDGET_MS ({self.queue_budget_ms:g}) must exceed DETECTOR_MAX_BATCH_WAIT_MS "
                f"({self.max_batch_wait_ms:g}): a frame may wait that long for company alone"
            )
        if self.queue_target_ms is not None and min(self.queue_target_ms, self.queue_budget_ms) <= (
            self.max_batch_wait_ms
        ):
            raise ValueError(
                f"DETECTOR_QUEUE_TARGET_MS ({self.queue_target_ms:g}) must exceed DETECTOR_MAX_BATCH_WAIT_MS "
                f"({self.max_batch_wait_ms:g}): a frame may wait that long for company alone"
            )
        if self.backend is Backend.TRITON and not self.triton_url:
            raise ValueError("TRITON_URL must be set when DETECTOR_BACKEND is triton")
        if self.backend is Backend.TRITON and self.triton_model_repository is None:
            raise ValueError(
                "TRITON_MODEL_REPOSITORY must be set when DETECTOR_BACKEND is triton "
                "(the folder Triton serves with --model-repository, writable by the detector)"
            )
        return self
