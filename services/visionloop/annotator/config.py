"""Annotator settings: optional SAM ONNX files."""

from __future__ import annotations

from pathlib import Path
from typing import Self

from pydantic import Field, field_validator, model_validator

from visionloop.runtime.config import ImageLimitSettings, PeerSettings, ServiceSettings


class AnnotatorSettings(ServiceSettings, PeerSettings, ImageLimitSettings):
    sam_encoder_path: Path | None = Field(None, alias="SAM_ENCODER_PATH", description="Exported SAM encoder (ONNX).")
    sam_decoder_path: Path | None = Field(None, alias="SAM_DECODER_PATH", description="Exported SAM decoder (ONNX).")
    label_studio_port: int = Field(
        -1, alias="LABEL_STUDIO_PORT", ge=-1, le=65535, description="Label Studio ML-backend HTTP port (-1: off)."
    )
    rank_new_images: bool = Field(
        True,
        alias="ANNOTATOR_RANK_NEW_IMAGES",
        description="Set the queue priority of images that arrive with detections (follows the hub's events).",
    )

    @field_validator("sam_encoder_path", "sam_decoder_path")
    @classmethod
    def _exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"file {value} does not exist")
        return value

    @model_validator(mode="after")
    def _pair(self) -> Self:
        if (self.sam_encoder_path is None) != (self.sam_decoder_path is None):
            raise ValueError("SAM_ENCODER_PATH and SAM_DECODER_PATH must be set together")
        return self
