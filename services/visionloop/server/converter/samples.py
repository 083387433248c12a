"""Images a conversion is checked and calibrated on: the project's own, as the detector sees them.

Validation images are the project's complete, annotated images: their annotations are the
truth the mAP@0.5 change is measured against. Every image is decoded as every service decodes it
(``visionloop.lib.images``) and pre-processed as the detector does for the model at hand, so
parity is judged on the inputs it will serve.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from visionloop.common.v1 import annotation_pb2, model_pb2
from visionloop.lib import images
from visionloop.lib.preprocess import Frame, Transform, prepare


@dataclass(frozen=True)
class ValidationImage:
    image_id: str
    data: bytes  # JPEG or PNG as stored by the hub
    annotations: Sequence[annotation_pb2.Annotation] = ()


@dataclass(frozen=True)
class Samples:
    """What a conversion runs on besides the model: validation images and calibration images."""

    validation: Sequence[ValidationImage] = ()
    calibration: Sequence[bytes] = ()
    limits: images.Limits = images.DEFAULT_LIMITS  # of the images decoded


@dataclass(frozen=True)
class Prepared:
    tensor: np.ndarray  # [3, H, W] float32
    transform: Transform
    size: tuple[int, int]  # the frame's width, height
    annotations: Sequence[annotation_pb2.Annotation] = field(default_factory=tuple)


def _frame(data: bytes, limits: images.Limits) -> Frame | None:
    try:
        return Frame(images.decode(data, limits), "bgr")
    except images.ImageError:  # over the limits or damaged in storage: left out, not a failed conversion
        return None


def prepare_all(
    validation: Sequence[ValidationImage], spec: model_pb2.ModelInput, limits: images.Limits = images.DEFAULT_LIMITS
) -> list[Prepared]:
    """Each image decoded and pre-processed for the model with input ``spec``."""
    prepared = []
    for image in validation:
        frame = _frame(image.data, limits)
        if frame is None:
            continue
        tensor, transform = prepare(frame, spec, spec.rescale_type)
        prepared.append(Prepared(tensor, transform, (frame.width, frame.height), tuple(image.annotations)))
    return prepared


def calibration_tensors(
    calibration: Sequence[bytes], spec: model_pb2.ModelInput, limits: images.Limits = images.DEFAULT_LIMITS
) -> list[np.ndarray]:
    return [p.tensor for p in prepare_all([ValidationImage("", data) for data in calibration], spec, limits)]


def parity_inputs(prepared: Sequence[Prepared], spec: model_pb2.ModelInput, count: int) -> np.ndarray:
    """A batch of ``count`` inputs: project images first, then seeded random images."""
    tensors = [p.tensor for p in prepared[:count]]
    rng = np.random.default_rng(0)
    while len(tensors) < count:
        tensors.append(rng.random((3, spec.height, spec.width), dtype=np.float32))
    return np.stack(tensors)
