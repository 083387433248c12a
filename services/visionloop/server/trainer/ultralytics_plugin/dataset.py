"""A training's images and annotations in the layout Ultralytics trains on.

``images/{train,val}/<id>.<ext>`` with ``labels/{train,val}/<id>.txt`` beside them and a
``data.yaml`` naming the classes in the model's output order (``TrainJob.categories``). The
held-out images are the validation set Ultralytics picks its best epoch on; without any, the
training images stand in.

Pixels are the ones ``TrainImage.pixels()`` gives (one decoder, one orientation rule): a JPEG
stored upright is linked as it is (OpenCV decodes the same picture), anything else (a PNG, a
JPEG with an EXIF rotation) is written as the upright pixels in a PNG. Labels:

- ``detect``: a box per object (outlines and masks give their bounding box), a point as a
  ``point_size`` box centred on it (the detector answers a point category's boxes as their
  centres); coordinates clipped to the image, empty boxes left out;
- ``segment``: an outline per object; several outlines (or a mask's several parts) are joined
  into one as Ultralytics' own COCO converter joins them, a box becomes its rectangle.

Crowd regions are no objects to learn and are left out, as in the reference trainer. The
folder is written aside and renamed into place, so a crash leaves it whole or absent.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path

import cv2
import numpy as np
import yaml

from visionloop.common.v1 import annotation_pb2, geometry_pb2
from visionloop.lib import images as image_codec
from visionloop.lib import shapes
from visionloop.server.trainer.plugin import CategoryInfo, TrainImage

DATA_YAML = "data.yaml"
SUBSETS = ("train", "val")
_PNG_OPTIONS = [cv2.IMWRITE_PNG_COMPRESSION, 1]  # written once, read every epoch: speed over size


def write(
    folder: Path,
    train: Sequence[TrainImage],
    held_out: Sequence[TrainImage],
    categories: Sequence[CategoryInfo],
    task: str,
    point_size: float,
) -> Path:
    """The dataset in ``folder`` (made once; an existing one is kept); returns its data.yaml."""
    data = folder / DATA_YAML
    if data.is_file():
        return data
    staging = folder.with_name(f"{folder.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    index = {c.id: k for k, c in enumerate(categories)}
    points = {c.id for c in categories if c.type == "point"}
    for subset, members in (("train", train), ("val", held_out)):
        for kind in ("images", "labels"):
            (staging / kind / subset).mkdir(parents=True)
        for image in members:
            name = _image_file(image, staging / "images" / subset)
            if name is None:
                continue  # damaged on disk since it was downloaded: trained without it
            lines = label_lines(image, index, points, task, point_size)
            (staging / "labels" / subset / f"{name}.txt").write_text("".join(f"{line}\n" for line in lines))
    # No ``path``: Ultralytics reads the folders beside data.yaml, wherever the training folder is.
    doc = {
        "train": "images/train",
        "val": "images/val" if held_out else "images/train",
        "names": {k: c.name for k, c in enumerate(categories)},
    }
    (staging / DATA_YAML).write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)
    return data


def _image_file(image: TrainImage, folder: Path) -> str | None:
    """Put ``image`` into ``folder`` as Ultralytics reads it; its file stem, None if it does not decode."""
    data = image.path.read_bytes()
    limits = image_codec.Limits(max(1, len(data)), image.width * image.height)
    try:
        info = image_codec.inspect(data, limits)
        if info.content_type == image_codec.JPEG and info.orientation == 1:
            image_codec.validate(data, limits)  # the same refusal of damaged files as pixels() gives
            os.symlink(os.path.relpath(image.path.resolve(), folder.resolve()), folder / f"{image.id}.jpg")
            return image.id
        pixels = image.pixels()
    except image_codec.ImageError:
        return None
    if not cv2.imwrite(str(folder / f"{image.id}.png"), pixels, _PNG_OPTIONS):
        raise OSError(f"could not write {folder / image.id}.png")
    return image.id


def label_lines(image: TrainImage, index: dict[str, int], points: set[str], task: str, point_size: float) -> list[str]:
    """Ultralytics label lines (class, then coordinates as fractions of the image) for one image."""
    lines = []
    for annotation in image.annotations:
        if annotation.crowd or annotation.category_id not in index:
            continue
        k = index[annotation.category_id]
        if task == "segment":
            outline = _outline(annotation.shape, image.width, image.height)
            if outline is not None:
                lines.append(_line(k, outline / [image.width, image.height]))
            continue
        box = _box(annotation, annotation.category_id in points, point_size)
        if box is not None and (line := _box_line(k, box, image.width, image.height)) is not None:
            lines.append(line)
    return lines


def _box(annotation: annotation_pb2.Annotation, is_point: bool, point_size: float) -> shapes.Box | None:
    shape = annotation.shape
    if shape.WhichOneof("kind") == "point":
        if not is_point:
            return None
        half = point_size / 2
        return (shape.point.x - half, shape.point.y - half, point_size, point_size)
    return shapes.shape_box(shape)


def _box_line(k: int, box: shapes.Box, width: int, height: int) -> str | None:
    x, y, w, h = box
    left, top = max(x, 0.0), max(y, 0.0)
    right, bottom = min(x + w, float(width)), min(y + h, float(height))
    if right <= left or bottom <= top:
        return None
    cx, cy = (left + right) / 2 / width, (top + bottom) / 2 / height
    return f"{k} {cx:.6f} {cy:.6f} {(right - left) / width:.6f} {(bottom - top) / height:.6f}"


def _line(k: int, points: np.ndarray) -> str:
    flat = np.clip(points, 0.0, 1.0).reshape(-1)
    return " ".join([str(k), *(f"{value:.6f}" for value in flat)])


def _outline(shape: geometry_pb2.Shape, width: int, height: int) -> np.ndarray | None:
    """One outline (N x 2 pixels) for a segmentation label; None for shapes without an area."""
    kind = shape.WhichOneof("kind")
    if kind == "box":
        x, y, w, h = shape.box.x, shape.box.y, shape.box.width, shape.box.height
        if w <= 0 or h <= 0:
            return None
        return np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h]], dtype=np.float64)
    if kind in ("polygon", "multi_polygon"):
        parts = [np.array([[p.x, p.y] for p in polygon.points], dtype=np.float64) for polygon in shapes.outlines(shape)]
    elif kind == "mask":
        parts = _mask_outlines(shape.mask, width, height)
    else:
        return None
    parts = [part for part in parts if len(part) >= 3]
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else _joined(parts)


def _mask_outlines(mask: geometry_pb2.Mask, width: int, height: int) -> list[np.ndarray]:
    try:
        pixels = shapes.decode_mask(mask)
    except shapes.BadMask:
        return []
    if pixels.shape != (height, width):  # drawn on another size: scale the outline to this image
        sx, sy = width / pixels.shape[1], height / pixels.shape[0]
    else:
        sx = sy = 1.0
    contours, _ = cv2.findContours(pixels.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return [c.reshape(-1, 2).astype(np.float64) * [sx, sy] for c in contours]


def _joined(parts: Iterable[np.ndarray]) -> np.ndarray:
    """Several outlines as one, joined at their closest points (Ultralytics' ``merge_multi_segment``)."""
    from ultralytics.data.converter import merge_multi_segment

    merged = merge_multi_segment([part.reshape(-1).tolist() for part in parts])
    return np.concatenate(merged, axis=0).astype(np.float64)
