"""Annotator settings: optional SAM ONNX files, the Label Studio bridge."""

from __future__ import annotations

from pathlib import Path
from typing import Self

from pydantic import Field, field_validator, model_validator

from visionloop.lib.images import ImageLimitSettings
from visionloop.runtime.config import PeerSettings, ServiceSettings

MIN_TOKEN = 16


class AnnotatorSettings(ServiceSettings, PeerSettings, ImageLimitSettings):
    sam_encoder_path: Path | None = Field(None, alias="SAM_ENCODER_PATH", description="Exported SAM encoder (ONNX).")
    sam_decoder_path: Path | None = Field(None, alias="SAM_DECODER_PATH", description="Exported SAM decoder (ONNX).")
    label_studio_port: int = Field(
        -1,
        alias="LABEL_STUDIO_PORT",
        ge=-1,
        le=65535,
        description="Port of the Label Studio bridge (ML backend, webhooks, images) over HTTP (-1: off).",
    )
    label_studio_token: str = Field(
        "",
        alias="LABEL_STUDIO_BRIDGE_TOKEN",
        repr=False,
        description="Credential Label Studio presents to the bridge (basic-auth password or bearer token); "
        "required with LABEL_STUDIO_PORT.",
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
    def _bridge_credential(self) -> Self:
        if self.label_studio_port >= 0 and len(self.label_studio_token) < MIN_TOKEN:
            raise ValueError(
                f"LABEL_STUDIO_BRIDGE_TOKEN must hold at least {MIN_TOKEN} characters when LABEL_STUDIO_PORT is set: "
                "the bridge writes to the hub and serves its images, so it answers only requests that carry it"
            )
        return self

    @model_validator(mode="after")
    def _pair(self) -> Self:
        if (self.sam_encoder_path is None) != (self.sam_decoder_path is None):
            raise ValueError("SAM_ENCODER_PATH and SAM_DECODER_PATH must be set together")
        return self
