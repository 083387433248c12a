"""The reference trainer: the plug-in interface implemented for the reference CenterNet.

It is the worked example of ``visionloop.server.trainer.plugin.TrainerPlugin``: hyperparameter checks
with corrections, training that resumes from its own checkpoints (``TrainingRun``), the best
state exported as ``pytorch`` and ``onnx`` model files, and detection with the same decoding
the detector uses.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from visionloop.common.v1 import detection_pb2, geometry_pb2
from visionloop.lib.centernet import artifacts
from visionloop.lib.centernet.model import CenterNet, export_onnx, model_json
from visionloop.lib.images import ImageError
from visionloop.lib.model_format.model_json import MODEL_JSON, write_model_json
from visionloop.lib.shapes import shape_box
from visionloop.lib.training_data import Annotation, Sample
from visionloop.server.trainer.plugin import (
    CategoryInfo,
    Progress,
    TrainerPlugin,
    TrainImage,
    TrainJob,
    Variant,
    Verification,
)
from visionloop.server.trainer.reference.predict import map50_evaluator, predict
from visionloop.server.trainer.reference.train import (
    REPEAT_THRESHOLD,
    EpochReport,
    Hyperparameters,
    TrainingRun,
    input_size,
)

BEST = "best"  # the best state as a pytorch artifact folder, written when training returns
DETECTION_THRESHOLD = 0.1  # low enough that uncertain objects reach ranking and review

DEFAULTS: dict[str, Any] = {
    "resolution": 320,
    "epochs": 30,
    "batch_size": 16,
    "learning_rate": 3e-3,
    "flip_rl": True,
    "flip_ud": True,
    "width": 24,
    "seed": 0,
    # The loop's labelled sets are small and skewed (a rare weed in a few frames): repeat those frames.
    "repeat_threshold": REPEAT_THRESHOLD,
}
# name -> (lowest, highest) accepted, declared with the variant: values outside are errors, never clamped
LIMITS: dict[str, tuple[float | None, float | None]] = {
    "resolution": (64, 1280),
    "epochs": (1, 10_000),
    "batch_size": (1, 512),
    "learning_rate": (1e-6, 1.0),
    "width": (8, 128),
    "repeat_threshold": (0.0, 1.0),
}


def _annotation(shape: geometry_pb2.Shape, name: str) -> Annotation | None:
    """A hub annotation's shape as the training loop's ground truth; outlines and masks train as their box."""
    if shape.WhichOneof("kind") == "point":
        return Annotation(name, point=(shape.point.x, shape.point.y))
    box = shape_box(shape)
    return Annotation(name, box=box) if box is not None else None


def _samples(images: Sequence[TrainImage], categories: Sequence[CategoryInfo]) -> list[Sample]:
    by_id = {c.id: c.name for c in categories}
    samples = []
    for index, image in enumerate(images):
        try:
            frame = image.pixels()
        except ImageError:  # damaged on disk since it was downloaded: train without it
            continue
        # By id: a category renamed since the annotation was made still trains under its current name.
        labels = [
            label
            for entry in image.annotations
            # a crowd region is no object to learn (COCO trainers leave them out too)
            if entry.category_id in by_id
            and not entry.crowd
            and (label := _annotation(entry.shape, by_id[entry.category_id]))
        ]
        samples.append(Sample(frame, tuple(labels), index))
    return samples


def _hyperparameters(values: Mapping[str, Any]) -> Hyperparameters:
    return Hyperparameters(
        resolution=int(values["resolution"]),
        epochs=int(values["epochs"]),
        batch_size=int(values["batch_size"]),
        learning_rate=float(values["learning_rate"]),
        flip_rl=bool(values["flip_rl"]),
        flip_ud=bool(values["flip_ud"]),
        width=int(values["width"]),
        seed=int(values["seed"]),
        repeat_threshold=float(values["repeat_threshold"]),
    )


class ReferenceTrainer(TrainerPlugin):
    """Trains ``centernet_small`` (boxes and points) on the CPU or a GPU."""

    def __init__(self) -> None:
        self._loaded: tuple[Path, CenterNet, dict[str, Any]] | None = None
        self._base: tuple[Path, CenterNet, dict[str, Any]] | None = None

    def variants(self) -> Sequence[Variant]:
        return [
            Variant(
                name=artifacts.VARIANT,
                description="Small CenterNet (stride 4) for boxes and points; trains on a CPU in minutes.",
                category_types=("box", "point"),
                defaults=DEFAULTS,
                formats=("pytorch", "onnx"),
                ranges=LIMITS,
            )
        ]

    def verify(self, variant: str, hyperparameters: Mapping[str, Any]) -> Verification:
        base = super().verify(variant, hyperparameters)
        if not base.corrected:  # unknown variant: nothing to check further
            return base
        errors, warnings = list(base.errors), list(base.warnings)
        corrected = dict(base.corrected)
        resolution = corrected["resolution"]
        if not errors and resolution % 16:
            corrected["resolution"] = max(64, round(resolution / 16) * 16)
            warnings.append(f"resolution {resolution} is not a multiple of 16; using {corrected['resolution']}")
        if not errors and corrected["learning_rate"] > 0.05:
            warnings.append(f"learning_rate {corrected['learning_rate']:g} is high for AdamW; training may diverge")
        return Verification(tuple(errors), tuple(warnings), corrected)

    # --- training ---------------------------------------------------------------------------

    def _run(self, job: TrainJob) -> TrainingRun:
        names = [c.name for c in job.categories]
        samples = _samples(job.train_images, job.categories)
        evaluate = None
        if job.test_images:
            test = _samples(job.test_images, job.categories)
            if test and samples:
                height, width = samples[0].image.shape[:2]
                size = input_size(int(job.hyperparameters["resolution"]), width, height)
                evaluate = map50_evaluator(test, [(c.name, c.type) for c in job.categories], size)
        return TrainingRun(
            samples,
            names,
            _hyperparameters(job.hyperparameters),
            job.folder / "run",
            base_state=self._base_state(job),
            evaluate=evaluate,
            # The folder is this training's own: a checkpoint it cannot resume was made before an upgrade
            # changed its hyperparameters (a new one with its default) or on other ranks; retrying cannot
            # resume it either, starting over can.
            restart_foreign=True,
        )

    def _base_state(self, job: TrainJob) -> dict[str, torch.Tensor] | None:
        if job.base_model is None:
            return None
        model, _ = artifacts.load_pytorch(job.base_model)
        return model.state_dict()

    def train(self, job: TrainJob, report: Callable[[Progress], None], cancelled: Callable[[], bool]) -> None:
        job.folder.mkdir(parents=True, exist_ok=True)
        run = self._run(job)

        def progress(epoch: EpochReport) -> None:
            report(Progress(epoch.epoch, epoch.epochs, epoch.loss, epoch.score))

        run.run(progress, cancelled)
        best = run.best_model()
        if best is None:
            return  # stopped before the first checkpoint: nothing to upload
        width, height = run.input_size
        doc = model_json([(c.name, c.type) for c in job.categories], width, height, [c.id for c in job.categories])
        doc["resolution"] = int(job.hyperparameters["resolution"])
        artifacts.write_pytorch(best, job.folder / BEST, doc, int(job.hyperparameters["width"]))

    def has_model(self, job: TrainJob) -> bool:
        return (job.folder / BEST / artifacts.WEIGHTS).is_file()

    def export(self, job: TrainJob, fmt: str, folder: Path) -> None:
        model, doc = self._best(job)
        source = job.folder / BEST
        if fmt == "pytorch":
            for name in (artifacts.WEIGHTS, MODEL_JSON):
                (folder / name).write_bytes((source / name).read_bytes())
        elif fmt == "onnx":
            export_onnx(model, folder / artifacts.ONNX, int(doc["input"]["width"]), int(doc["input"]["height"]))
            write_model_json(folder, {**doc, "format": "onnx"})
        else:
            raise ValueError(f"the reference trainer writes pytorch and onnx, not {fmt!r}")

    def detect(self, job: TrainJob, images: Sequence[np.ndarray]) -> list[detection_pb2.Detections]:
        model, doc = self._best(job)
        return _detections(model, doc, [(c.name, c.type) for c in job.categories], images)

    def detect_base(self, job: TrainJob, images: Sequence[np.ndarray]) -> list[detection_pb2.Detections] | None:
        if job.base_model is None:
            return None
        if self._base is None or self._base[0] != job.base_model:
            model, doc = artifacts.load_pytorch(job.base_model)
            self._base = (job.base_model, model.eval(), doc)
        _, model, doc = self._base
        # The base model's own outputs: it may predate categories the project added since.
        categories = [(c["name"], c.get("type", "box")) for c in doc["categories"]]
        return _detections(model, doc, categories, images)

    def _best(self, job: TrainJob) -> tuple[CenterNet, dict[str, Any]]:
        folder = job.folder / BEST
        if self._loaded is None or self._loaded[0] != folder:
            model, doc = artifacts.load_pytorch(folder)
            self._loaded = (folder, model, doc)
        return self._loaded[1], self._loaded[2]

    def close(self) -> None:
        self._loaded = None
        self._base = None


def _detections(
    model: CenterNet, doc: Mapping[str, Any], categories: Sequence[tuple[str, str]], images: Sequence[np.ndarray]
) -> list[detection_pb2.Detections]:
    """``model``'s detections for BGR images, with the category ids of its model.json."""
    size = (int(doc["input"]["width"]), int(doc["input"]["height"]))
    found = predict(model, list(images), categories, size, score_threshold=DETECTION_THRESHOLD)
    ids = {c["name"]: str(c.get("id", "")) for c in doc["categories"]}
    results = []
    for predictions in found:
        detections = detection_pb2.Detections()
        for p in predictions:
            score = float(min(max(p.score, 0.0), 1.0))
            if p.point is not None:
                detections.points.add(
                    category_id=ids.get(p.category, ""),
                    category_name=p.category,
                    confidence=score,
                    point=geometry_pb2.Point(x=p.point[0], y=p.point[1]),
                )
            elif p.box is not None:
                x, y, w, h = p.box
                detections.boxes.add(
                    category_id=ids.get(p.category, ""),
                    category_name=p.category,
                    confidence=score,
                    box=geometry_pb2.Box(x=x, y=y, width=w, height=h),
                )
        results.append(detections)
    return results
