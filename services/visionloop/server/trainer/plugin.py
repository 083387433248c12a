"""The plug-in interface a training framework implements to run inside the VisionLoop trainer.

The trainer service owns everything around a training: the hub, the queue lease, the state
machine, persistence, retries, uploads. A plug-in only knows how to train and run its models:

- ``variants()`` — what it builds: default hyperparameters (each default's type is the type
  accepted) with their ranges, base models, formats it writes; the trainer declares them to
  the hub, which checks new trainings against them before queueing;
- ``verify(variant, hyperparameters)`` — errors, warnings and the corrected values it would use;
- ``train(job, report, cancelled)`` — train on ``job.train_images``, checkpointing into
  ``job.folder`` and resuming from what is there (the service restarts it after a crash); a
  ``CannotTrain`` ends the training as failed at once, any other error is retried;
- ``has_model(job)`` — whether a best state exists to upload (a stop before the first
  checkpoint leaves none);
- ``export(job, format, folder)`` — write the best state's model files for a format, with a
  ``model.json`` describing input, output layout and categories;
- ``detect(job, images)`` — run the best state on decoded images;
- ``detect_base(job, images)`` (optional) — run the base model a training continues from, so the
  trainer measures it on the same held-out images as the new model and the hub's promotion gate
  compares like with like; a plug-in that cannot leaves it out, and its continuations are only
  compared when the deployed model's own metrics were measured on the same images.

Images are decoded with ``TrainImage.pixels()`` (``visionloop.lib.images``): one decoder and one
orientation rule, so a plug-in trains on the pixels the hub's annotations were drawn on and the
detector later serves.

``visionloop.server.trainer.reference.plugin.ReferenceTrainer`` is the worked example. A plug-in is
chosen with ``TRAINER_PLUGIN=package.module:ClassName``.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from visionloop.common.v1 import annotation_pb2, detection_pb2
from visionloop.lib import images
from visionloop.lib.hyperparameters import Spec, specs_from_defaults
from visionloop.lib.hyperparameters import check as check_hyperparameters


class CannotTrain(Exception):
    """Raised by a plug-in when retrying cannot help (a base model it cannot continue from, ...): the
    training ends as failed at once, with this message as its reason."""


@dataclass(frozen=True)
class Variant:
    """A model architecture a plug-in builds."""

    name: str
    description: str
    category_types: tuple[str, ...]  # "box", "point", "segmentation", "classification"
    defaults: Mapping[str, Any]
    base_models: tuple[str, ...] = ()
    formats: tuple[str, ...] = ("onnx",)
    # name -> (lowest, highest) accepted, None for no bound; values outside are errors, never clamped
    ranges: Mapping[str, tuple[float | None, float | None]] = field(default_factory=dict)

    @property
    def hyperparameters(self) -> tuple[Spec, ...]:
        """What the variant declares: each default's type and its range (published to the hub)."""
        return specs_from_defaults(self.defaults, self.ranges)


@dataclass(frozen=True)
class Verification:
    """The answer to "can these hyperparameters train?"."""

    errors: tuple[str, ...]
    warnings: tuple[str, ...]
    corrected: Mapping[str, Any]

    @property
    def valid(self) -> bool:
        return not self.errors


@dataclass(frozen=True)
class CategoryInfo:
    id: str
    name: str
    type: str  # "box", "point", "segmentation", "classification"


@dataclass(frozen=True)
class TrainImage:
    """A downloaded, decodable image and its human annotations (hub ids and shapes).

    ``width`` x ``height`` is the upright picture's size (EXIF orientation applied), the one the
    annotations are drawn on: read the file with ``pixels()``, not with a decoder of your own.
    """

    id: str
    path: Path
    width: int
    height: int
    annotations: tuple[annotation_pb2.Annotation, ...]

    def pixels(self) -> np.ndarray:
        """HxWx3 uint8 BGR, upright, as the hub, the detector and the annotator see this image.

        The file passed the trainer's limits when it was downloaded; its recorded size is the
        pixel limit here, so a file replaced since cannot cost more memory.
        """
        data = self.path.read_bytes()
        return images.decode(data, images.Limits(max(1, len(data)), self.width * self.height))


@dataclass(frozen=True)
class TrainJob:
    """One training as a plug-in sees it. ``folder`` survives restarts; put checkpoints there."""

    training_id: str
    variant: str
    hyperparameters: Mapping[str, Any]  # corrected by ``verify``
    categories: tuple[CategoryInfo, ...]  # in the model's output order
    folder: Path
    train_images: tuple[TrainImage, ...] = ()
    test_images: tuple[TrainImage, ...] = ()
    base_model: Path | None = None  # extracted base model files in the plug-in's own format, if any
    base_model_format: str = ""


@dataclass(frozen=True)
class Progress:
    """What ``train`` reports after each epoch (or step)."""

    epoch: int
    epochs: int
    loss: float
    map50: float | None = None  # on the test images, when evaluated
    extra: Mapping[str, float] = field(default_factory=dict)

    @property
    def fraction(self) -> float:
        return self.epoch / self.epochs if self.epochs else 0.0


class TrainerPlugin(ABC):
    """Subclass, implement the abstract methods, point ``TRAINER_PLUGIN`` at the class."""

    @abstractmethod
    def variants(self) -> Sequence[Variant]:
        """The variants this plug-in trains; the first is the default."""

    def verify(self, variant: str, hyperparameters: Mapping[str, Any]) -> Verification:
        """Check hyperparameters against the variant's declared ones (``Variant.hyperparameters``):
        NaN, infinities, wrong types and values out of range error, unknown names warn, missing
        names take the default. Override to add checks or corrections (and call super)."""
        chosen = self.variant(variant)
        if chosen is None:
            names = ", ".join(v.name for v in self.variants())
            return Verification((f"unknown model variant {variant!r}; this trainer builds {names}",), (), {})
        checked = check_hyperparameters(hyperparameters, chosen.hyperparameters, chosen.name)
        return Verification(checked.errors, checked.warnings, dict(checked.values))

    def variant(self, name: str) -> Variant | None:
        """The variant called ``name`` (empty: the default)."""
        variants = list(self.variants())
        if not name:
            return variants[0] if variants else None
        return next((v for v in variants if v.name == name), None)

    @abstractmethod
    def train(self, job: TrainJob, report: Callable[[Progress], None], cancelled: Callable[[], bool]) -> None:
        """Train, resuming from checkpoints in ``job.folder``; return early (keeping the best
        state) once ``cancelled()`` is true. Runs on a worker thread."""

    @abstractmethod
    def has_model(self, job: TrainJob) -> bool:
        """Whether a best state exists to export."""

    @abstractmethod
    def export(self, job: TrainJob, fmt: str, folder: Path) -> None:
        """Write the best state's files for ``fmt`` into ``folder``, including ``model.json``."""

    @abstractmethod
    def detect(self, job: TrainJob, images: Sequence[np.ndarray]) -> list[detection_pb2.Detections]:
        """Detections (confidence 0..1, coordinates in image pixels) for BGR images."""

    def detect_base(self, job: TrainJob, images: Sequence[np.ndarray]) -> list[detection_pb2.Detections] | None:
        """Detections of the base model (``job.base_model``) for BGR images, as ``detect`` gives them;
        None when the plug-in cannot run it (the default)."""
        return None

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release what ``detect`` keeps loaded between batches."""


def load_plugin(spec: str) -> TrainerPlugin:
    """An instance of ``package.module:ClassName``; ValueError naming the problem."""
    module_name, _, class_name = spec.partition(":")
    if not module_name or not class_name:
        raise ValueError(f"TRAINER_PLUGIN must look like package.module:ClassName, got {spec!r}")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as error:
        raise ValueError(f"TRAINER_PLUGIN {spec!r} cannot be loaded: {error}") from None
    if not (isinstance(cls, type) and issubclass(cls, TrainerPlugin)):
        raise ValueError(f"TRAINER_PLUGIN {spec!r} is not a TrainerPlugin subclass")
    return cls()
