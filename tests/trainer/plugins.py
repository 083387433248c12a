"""Trainers for tests, loaded through TRAINER_PLUGIN like any plug-in: the reference trainer with
injected faults, and one that makes models of a chosen quality at once."""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from visionloop.common.v1 import annotation_pb2, detection_pb2, geometry_pb2
from visionloop.lib.model_format.model_json import MODEL_JSON
from visionloop.lib.shapes import shape_box
from visionloop.server.trainer.plugin import CannotTrain, Progress, TrainerPlugin, TrainJob, Variant
from visionloop.server.trainer.reference.plugin import ReferenceTrainer

BEST = "best"


class BrokenTrainer(ReferenceTrainer):
    """Training always fails, as with a driver that lost its GPU."""

    def train(self, job: TrainJob, report: Callable[[Progress], None], cancelled: Callable[[], bool]) -> None:
        raise RuntimeError("CUDA error: an illegal memory access was encountered")


class MisconfiguredTrainer(ReferenceTrainer):
    """Cannot train what it was given, as with a base model of another framework: retrying cannot help."""

    def train(self, job: TrainJob, report: Callable[[Progress], None], cancelled: Callable[[], bool]) -> None:
        raise CannotTrain("the base model is a reference-detector; this trainer continues only its own models")


class HangingExportTrainer(ReferenceTrainer):
    """Hangs in the onnx export (after pytorch went out), leaving a marker: the moment to kill -9."""

    def export(self, job: TrainJob, fmt: str, folder: Path) -> None:
        marker = os.environ.get("VISIONLOOP_TEST_HANG_MARKER")
        if fmt == "onnx" and marker:
            Path(marker).touch()
            time.sleep(600)
        super().export(job, fmt, folder)


class ScriptedTrainer(TrainerPlugin):
    """Models of a chosen quality at once, for the promotion gate's tests: no network is trained.

    A model of ``quality`` q finds each annotated object with probability q (fixed per object by
    its id) exactly where it is, and nothing else; so its mAP@0.5 is about q on any images. It
    recognises the images of its job by their pixels, and keeps q in its model.json.
    """

    def __init__(self) -> None:
        self._objects: dict[str, dict[bytes, tuple[annotation_pb2.Annotation, ...]]] = {}

    def variants(self) -> Sequence[Variant]:
        return [
            Variant(
                name="scripted",
                description="A model of the quality asked for, in no time (tests only).",
                category_types=("box", "point"),
                defaults={"epochs": 1, "quality": 0.5},
                formats=("pytorch",),
                ranges={"quality": (0.0, 1.0)},
            )
        ]

    def train(self, job: TrainJob, report: Callable[[Progress], None], cancelled: Callable[[], bool]) -> None:
        best = job.folder / BEST
        best.mkdir(parents=True, exist_ok=True)
        doc = {
            "categories": [{"id": c.id, "name": c.name, "type": c.type} for c in job.categories],
            "quality": float(job.hyperparameters["quality"]),
        }
        (best / MODEL_JSON).write_text(json.dumps(doc))
        report(Progress(1, 1, 0.0))

    def has_model(self, job: TrainJob) -> bool:
        return (job.folder / BEST / MODEL_JSON).is_file()

    def export(self, job: TrainJob, fmt: str, folder: Path) -> None:
        (folder / MODEL_JSON).write_bytes((job.folder / BEST / MODEL_JSON).read_bytes())

    def detect(self, job: TrainJob, images: Sequence[np.ndarray]) -> list[detection_pb2.Detections]:
        return self._detect(job, job.folder / BEST, images)

    def detect_base(self, job: TrainJob, images: Sequence[np.ndarray]) -> list[detection_pb2.Detections] | None:
        return None if job.base_model is None else self._detect(job, job.base_model, images)

    def _detect(self, job: TrainJob, model: Path, images: Sequence[np.ndarray]) -> list[detection_pb2.Detections]:
        quality = float(json.loads((model / MODEL_JSON).read_text())["quality"])
        known = self._objects.get(job.training_id)
        if known is None:
            known = {image.pixels().tobytes(): image.annotations for image in (*job.train_images, *job.test_images)}
            self._objects[job.training_id] = known
        results = []
        for pixels in images:
            found = detection_pb2.Detections()
            for annotation in known.get(pixels.tobytes(), ()):
                if int(hashlib.sha256(annotation.id.encode()).hexdigest()[:8], 16) / 2**32 >= quality:
                    continue
                name, category = annotation.category_name, annotation.category_id
                if annotation.shape.WhichOneof("kind") == "point":
                    point = annotation.shape.point
                    found.points.add(category_id=category, category_name=name, confidence=0.9, point=point)
                elif (box := shape_box(annotation.shape)) is not None:
                    x, y, w, h = box
                    geometry = geometry_pb2.Box(x=x, y=y, width=w, height=h)
                    found.boxes.add(category_id=category, category_name=name, confidence=0.9, box=geometry)
            results.append(found)
        return results
