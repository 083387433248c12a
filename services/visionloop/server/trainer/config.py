"""Trainer settings (names users of existing learning-loop nodes know, where one exists)."""

from __future__ import annotations

from pydantic import Field

from visionloop.lib.images import ImageLimitSettings
from visionloop.runtime.config import PeerSettings, ServiceSettings


class TrainerSettings(ServiceSettings, PeerSettings, ImageLimitSettings):
    trainer_plugin: str = Field(
        "visionloop.server.trainer.reference.plugin:ReferenceTrainer",
        alias="TRAINER_PLUGIN",
        description="The training framework, as package.module:ClassName of a TrainerPlugin subclass.",
    )
    inference_batch_size: int = Field(
        16, alias="INFERENCE_BATCH_SIZE", ge=1, le=1024, description="Batch size when detecting after training."
    )
    restart_after_training: bool = Field(
        False, alias="RESTART_AFTER_TRAINING", description="Exit after each training so a supervisor restarts it."
    )
    keep_old_trainings: bool = Field(
        False, alias="KEEP_OLD_TRAININGS", description="Keep finished trainings' folders instead of deleting them."
    )
    lease_seconds: float = Field(
        60.0, alias="TRAINER_LEASE_SECONDS", ge=5, le=3600, description="Lease on a claimed training."
    )
    claim_interval_seconds: float = Field(
        5.0, alias="TRAINER_CLAIM_INTERVAL_SECONDS", gt=0, le=600, description="How often an idle trainer polls."
    )
    max_step_attempts: int = Field(
        3, alias="TRAINER_MAX_STEP_ATTEMPTS", ge=1, le=100, description="Attempts per state before the training fails."
    )
    max_training_crashes: int = Field(
        3,
        alias="TRAINER_MAX_TRAINING_CRASHES",
        ge=1,
        le=100,
        description="Runs of one training that may end in a crash (killed, out of memory) without progress.",
    )
    step_backoff_seconds: float = Field(
        2.0, alias="TRAINER_STEP_BACKOFF_SECONDS", ge=0, le=600, description="First retry delay; doubles per attempt."
    )
