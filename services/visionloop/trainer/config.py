"""Trainer settings (names kept from the learning-loop node library)."""

from __future__ import annotations

from pydantic import Field

from visionloop.runtime.config import PeerSettings, ServiceSettings


class TrainerSettings(ServiceSettings, PeerSettings):
    inference_batch_size: int = Field(
        16, alias="INFERENCE_BATCH_SIZE", ge=1, le=1024, description="Batch size when detecting after training."
    )
    restart_after_training: bool = Field(
        False, alias="RESTART_AFTER_TRAINING", description="Exit after each training so a supervisor restarts it."
    )
    keep_old_trainings: bool = Field(
        False, alias="KEEP_OLD_TRAININGS", description="Keep finished trainings' folders instead of deleting them."
    )
