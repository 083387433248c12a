"""A plug-in that learns nothing in no time, for tests of the trainer's own machinery (no PyTorch).

It goes through every state like a real plug-in: reports epochs, keeps a "model" file in the
job folder, exports a model zip the hub accepts and detects nothing. Its faulty subclasses are
loaded through TRAINER_PLUGIN like any plug-in.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from visionloop.common.v1 import detection_pb2
from visionloop.server.trainer.plugin import Progress, TrainerPlugin, TrainJob, Variant

VARIANT = "tiny"
POISON_SEED = 13  # the faulty plug-ins misbehave only for trainings with this seed


class TinyTrainer(TrainerPlugin):
    def variants(self) -> Sequence[Variant]:
        return [
            Variant(
                name=VARIANT,
                description="Learns nothing; for tests.",
                category_types=("box", "point"),
                defaults={"epochs": 2, "learning_rate": 0.01, "seed": 0, "augment": True},
                formats=("pytorch",),
                ranges={"epochs": (1, 100), "learning_rate": (0.0, 1.0)},
            )
        ]

    def train(self, job: TrainJob, report: Callable[[Progress], None], cancelled: Callable[[], bool]) -> None:
        epochs = int(job.hyperparameters["epochs"])
        for epoch in range(1, epochs + 1):
            if cancelled():
                break
            report(Progress(epoch, epochs, loss=1.0 / epoch))
        job.folder.mkdir(parents=True, exist_ok=True)
        (job.folder / "model.txt").write_text("nothing learnt")

    def has_model(self, job: TrainJob) -> bool:
        return (job.folder / "model.txt").is_file()

    def export(self, job: TrainJob, fmt: str, folder: Path) -> None:
        categories = [{"id": c.id, "name": c.name, "type": c.type} for c in job.categories]
        (folder / "model.json").write_text(json.dumps({"format": fmt, "resolution": 64, "categories": categories}))
        (folder / "model.txt").write_text("nothing learnt")

    def detect(self, job: TrainJob, images: Sequence[np.ndarray]) -> list[detection_pb2.Detections]:
        return [detection_pb2.Detections() for _ in images]


def _poisoned(job: TrainJob) -> bool:
    return int(job.hyperparameters["seed"]) == POISON_SEED


class ExitingTrainer(TinyTrainer):
    """Calls sys.exit in training, as a framework that gives up on the whole process."""

    def train(self, job: TrainJob, report: Callable[[Progress], None], cancelled: Callable[[], bool]) -> None:
        if _poisoned(job):
            sys.exit("out of patience")
        super().train(job, report, cancelled)


class KillingTrainer(TinyTrainer):
    """Kills its own process in training, as the kernel's OOM killer does."""

    def train(self, job: TrainJob, report: Callable[[Progress], None], cancelled: Callable[[], bool]) -> None:
        if _poisoned(job):
            os.kill(os.getpid(), signal.SIGKILL)
        super().train(job, report, cancelled)


class UnreachableCatalogueTrainer(TinyTrainer):
    """Cannot list its variants while the file named by VISIONLOOP_TEST_BROKEN_MARKER exists: the
    claim loop (which asks for them) dies outside any training."""

    def variants(self) -> Sequence[Variant]:
        marker = os.environ.get("VISIONLOOP_TEST_BROKEN_MARKER", "")
        if marker and Path(marker).exists():
            raise RuntimeError("the variant catalogue is unreachable")
        return super().variants()
