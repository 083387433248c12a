"""Detector settings: which hub, which backend, active-learning thresholds."""

from __future__ import annotations

from enum import StrEnum
from typing import Self

from pydantic import Field, model_validator

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

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.min_uncertain_threshold > self.max_uncertain_threshold:
            raise ValueError(
                f"MIN_UNCERTAIN_THRESHOLD ({self.min_uncertain_threshold}) must not exceed "
                f"MAX_UNCERTAIN_THRESHOLD ({self.max_uncertain_threshold})"
            )
        if self.backend is Backend.TRITON and not self.triton_url:
            raise ValueError("TRITON_URL must be set when DETECTOR_BACKEND is triton")
        return self
