"""Converter settings."""

from __future__ import annotations

from pydantic import Field

from visionloop.runtime.config import PeerSettings, ServiceSettings


class ConverterSettings(ServiceSettings, PeerSettings):
    max_attempts: int = Field(
        3, alias="CONVERTER_MAX_ATTEMPTS", ge=1, le=20, description="Attempts per conversion before it is failed."
    )
