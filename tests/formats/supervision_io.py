"""Runs in .venv-formats (see tests/formats/tools.py): supervision writes YOLO and reads YOLO and COCO.

``write-yolo OUT``: a YOLO detection dataset as ``DetectionDataset.as_yolo`` writes it, its
data.yaml by PyYAML (a class name with an umlaut comes out as a ``\\xE4`` escape).
``read-yolo DIR`` and ``read-coco DIR``: what supervision reads, as JSON on stdout, by image
sha256 (COCO: each ``annotations/instances_<subset>.json`` with ``images/<subset>/``).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import supervision as sv

CLASSES = ["Blätter", "weed", "stone"]


def write_yolo(out: Path) -> None:
    rng = np.random.default_rng(3)
    sizes = [(64, 48), (80, 60), (40, 40), (64, 48)]
    images: dict[str, np.ndarray] = {}
    annotations: dict[str, sv.Detections] = {}
    for index, (width, height) in enumerate(sizes):
        name = str(out / "source" / f"frame_{index}.png")
        images[name] = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
        boxes = [[2 + index, 3, 20 + index, 25], [width / 2, height / 2, width - 1, height - 1]][: index % 3]
        annotations[name] = sv.Detections(
            xyxy=np.array(boxes, dtype=np.float32).reshape(-1, 4),
            class_id=np.array([(index + k) % len(CLASSES) for k in range(len(boxes))], dtype=int),
        )
    dataset = sv.DetectionDataset(classes=CLASSES, images=images, annotations=annotations)
    dataset.as_yolo(
        images_directory_path=str(out / "images"),
        annotations_directory_path=str(out / "labels"),
        data_yaml_path=str(out / "data.yaml"),
    )


def _listing(dataset: sv.DetectionDataset) -> list[dict[str, Any]]:
    images = []
    for path, _, detections in dataset:
        data = Path(path).read_bytes()
        objects = []
        for k in range(len(detections)):
            entry: dict[str, Any] = {
                "class": dataset.classes[int(detections.class_id[k])],
                "xyxy": [round(float(v), 2) for v in detections.xyxy[k]],
            }
            if detections.mask is not None:
                entry["mask_area"] = int(detections.mask[k].sum())
            if "iscrowd" in detections.data:
                entry["crowd"] = bool(detections.data["iscrowd"][k])
            objects.append(entry)
        images.append({"sha256": hashlib.sha256(data).hexdigest(), "objects": sorted(objects, key=json.dumps)})
    return images


def read_yolo(folder: Path) -> list[dict[str, Any]]:
    """Every images/<subset> folder (or images/ itself) with its labels folder."""
    found = []
    folders = [p for p in sorted((folder / "images").iterdir()) if p.is_dir()] or [folder / "images"]
    for images in folders:
        labels = folder / "labels" / images.relative_to(folder / "images")
        dataset = sv.DetectionDataset.from_yolo(str(images), str(labels), str(folder / "data.yaml"))
        found += _listing(dataset)
    return found


def read_coco(folder: Path) -> list[dict[str, Any]]:
    found = []
    for json_path in sorted((folder / "annotations").glob("instances_*.json")):
        images = folder / "images" / json_path.stem.removeprefix("instances_")
        dataset = sv.DetectionDataset.from_coco(str(images), str(json_path), force_masks=True)
        found += _listing(dataset)
    return found


if __name__ == "__main__":
    command, path = sys.argv[1], Path(sys.argv[2])
    if command == "write-yolo":
        write_yolo(path)
    else:
        reader = read_yolo if command == "read-yolo" else read_coco
        json.dump(reader(path), sys.stdout)
