"""Reference trainers with injected faults, loaded through TRAINER_PLUGIN like any plug-in."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from visionloop.trainer.plugin import Progress, TrainJob
from visionloop.trainer.reference.plugin import ReferenceTrainer


class BrokenTrainer(ReferenceTrainer):
    """Training always fails, as with a driver that lost its GPU."""

    def train(self, job: TrainJob, report: Callable[[Progress], None], cancelled: Callable[[], bool]) -> None:
        raise RuntimeError("CUDA error: an illegal memory access was encountered")


class HangingExportTrainer(ReferenceTrainer):
    """Hangs in the onnx export (after pytorch went out), leaving a marker: the moment to kill -9."""

    def export(self, job: TrainJob, fmt: str, folder: Path) -> None:
        marker = os.environ.get("VISIONLOOP_TEST_HANG_MARKER")
        if fmt == "onnx" and marker:
            Path(marker).touch()
            time.sleep(600)
        super().export(job, fmt, folder)
