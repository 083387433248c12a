"""A training's data: the project's complete images and their annotations, in the training folder.

Downloads resume (files already there are kept: the image id is its sha256), images that do
not decode are skipped and counted, and the split into train and test is stable: an image
tagged ``test`` or ``train`` goes there, any other by its id's hash, so the held-out set does
not drift between trainings.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import json_format

from visionloop.common.v1 import annotation_pb2
from visionloop.lib import images
from visionloop.runtime.files import write_atomically
from visionloop.server.trainer.hub_client import COMPLETE, TrainerHub
from visionloop.server.trainer.plugin import CategoryInfo, TrainImage

MANIFEST = "data.json"
TEST_PERCENT = 20
DOWNLOAD_BATCH = 32


@dataclass(frozen=True)
class TrainingData:
    train: tuple[TrainImage, ...]
    test: tuple[TrainImage, ...]
    skipped: int


def is_test(image_id: str, tags: Sequence[str]) -> bool:
    if "test" in tags:
        return True
    if "train" in tags:
        return False
    return int(image_id[:8], 16) % 100 < TEST_PERCENT


def held_out_digest(images: Sequence[TrainImage]) -> str:
    """Which images a model was measured on: sha256 of their sorted ids, one per line.

    The hub's promotion gate compares two versions' metrics only when they were measured on the
    same images; this is how it tells.
    """
    return hashlib.sha256("\n".join(sorted(image.id for image in images)).encode()).hexdigest()


def decodes(path: Path, limits: images.Limits) -> tuple[int, int] | None:
    """The upright (width, height) when the file decodes within ``limits``, else None.

    The size every consumer sees (``visionloop.lib.images``): the one the hub recorded and the
    annotations are drawn on.
    """
    try:
        info = images.validate(path.read_bytes(), limits)
    except images.ImageError:
        return None
    return info.width, info.height


def download(
    hub: TrainerHub,
    folder: Path,
    categories: Sequence[CategoryInfo],
    progress: Callable[[float], None],
    limits: images.Limits = images.DEFAULT_LIMITS,
) -> TrainingData:
    """Fetch what is missing into ``folder/images`` and write the manifest; returns the data.

    An image that does not decode within ``limits`` is skipped and counted.
    """
    wanted = {c.id for c in categories}
    images = list(hub.images(COMPLETE))
    store = folder / "images"
    store.mkdir(parents=True, exist_ok=True)
    missing = [m.id for m in images if not (store / m.id).is_file()]
    total = len(missing) + len(images)  # downloads, then one annotation query per image
    done = 0
    for start in range(0, len(missing), DOWNLOAD_BATCH):
        for image_id, data in hub.download_images(missing[start : start + DOWNLOAD_BATCH]):
            write_atomically(store / image_id, data)
            done += 1
        progress(done / max(total, 1))
    entries, skipped = [], 0
    for meta in images:
        path = store / meta.id
        size = decodes(path, limits)
        if size is None:
            skipped += 1
            path.unlink(missing_ok=True)
        else:
            annotations = [a for a in hub.annotations(meta.id) if a.category_id in wanted]
            entries.append(
                {
                    "id": meta.id,
                    "width": size[0],
                    "height": size[1],
                    "test": is_test(meta.id, meta.tags),
                    "annotations": [json_format.MessageToDict(a) for a in annotations],
                }
            )
        done += 1
        if done % 50 == 0:
            progress(done / max(total, 1))
    manifest = {"images": entries, "skipped": skipped}
    write_atomically(folder / MANIFEST, json.dumps(manifest).encode())
    progress(1.0)
    return load(folder)


def load(folder: Path) -> TrainingData:
    doc = json.loads((folder / MANIFEST).read_text())
    train: list[TrainImage] = []
    test: list[TrainImage] = []
    for entry in doc["images"]:
        image = TrainImage(
            id=entry["id"],
            path=folder / "images" / entry["id"],
            width=int(entry["width"]),
            height=int(entry["height"]),
            annotations=tuple(json_format.ParseDict(a, annotation_pb2.Annotation()) for a in entry["annotations"]),
        )
        (test if entry["test"] else train).append(image)
    return TrainingData(tuple(train), tuple(test), int(doc["skipped"]))
