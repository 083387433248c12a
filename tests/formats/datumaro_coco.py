"""Runs in .venv-formats (see tests/formats/tools.py): datumaro writes and reads COCO datasets.

``write OUT``: a COCO dataset as datumaro's standard export writes it (``annotations/
instances_<subset>.json``, ``images/<subset>/``): two subsets, images of the same base name in
different folders, boxes, polygons, an object of two outlines, crowd regions (RLE).
``read DIR``: what datumaro reads from a COCO folder, as JSON on stdout, by image sha256.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import datumaro as dm
import numpy as np

LABELS = ["weed", "leaf"]
WEED, LEAF = 0, 1


def picture(seed: int, width: int = 64, height: int = 48) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 255, (height, width, 3), dtype=np.uint8)


def write(out: Path) -> None:
    def item(item_id: str, subset: str, seed: int, annotations: list) -> dm.DatasetItem:
        return dm.DatasetItem(
            id=item_id, subset=subset, media=dm.Image.from_numpy(data=picture(seed)), annotations=annotations
        )

    items = [
        item("field_a/frame_001", "train", 1, [dm.Bbox(4, 5, 20, 10, label=WEED), dm.Bbox(30, 20, 8, 6, label=WEED)]),
        # the same base name in another folder, with an outline and an object of two outlines
        item(
            "field_b/frame_001",
            "train",
            2,
            [
                dm.Polygon([10, 10, 30, 12, 20, 30], label=LEAF),
                dm.Polygon([40, 5, 50, 5, 50, 15, 40, 15], label=LEAF, group=7),
                dm.Polygon([40, 25, 50, 25, 45, 35], label=LEAF, group=7),
            ],
        ),
        # a crowd region (written as RLE) beside a box
        item(
            "frame_002",
            "train",
            3,
            [
                dm.Polygon([5, 5, 40, 5, 40, 30, 5, 30], label=LEAF, attributes={"is_crowd": True}),
                dm.Bbox(45, 30, 10, 10, label=WEED),
            ],
        ),
        # val: again a repeated base name, and a crowd region drawn as a mask
        item("field_a/frame_001", "val", 4, [dm.Bbox(1, 2, 30, 20, label=WEED)]),
        item(
            "frame_003",
            "val",
            5,
            [
                dm.Mask(image=(np.indices((48, 64))[1] > 40).astype(np.uint8), label=LEAF),
                dm.Polygon([2, 2, 20, 2, 11, 20], label=LEAF),
            ],
        ),
    ]
    categories = {dm.AnnotationType.label: dm.LabelCategories.from_iterable(LABELS)}
    dataset = dm.Dataset.from_iterable(items, categories=categories)
    dataset.export(str(out), "coco_instances", save_media=True)


def read(folder: Path) -> None:
    dataset = dm.Dataset.import_from(str(folder), "coco_instances")
    names = [c.name for c in dataset.categories()[dm.AnnotationType.label]]
    images = []
    for item in dataset:
        data = Path(item.media.path).read_bytes()
        groups: dict[int, int] = {}
        for ann in item.annotations:
            if ann.group:
                groups[ann.group] = groups.get(ann.group, 0) + 1
        objects = []
        for ann in item.annotations:
            entry = {
                "type": ann.type.name,
                "label": names[ann.label],
                "bbox": [round(float(v), 2) for v in ann.get_bbox()],
                "crowd": bool(ann.attributes.get("is_crowd", False)),
                "parts": groups.get(ann.group, 1) if ann.group else 1,
            }
            if isinstance(ann, dm.Mask):
                entry["area"] = int(ann.image.sum())
            elif isinstance(ann, dm.Polygon):
                entry["points"] = [round(float(v), 2) for v in ann.points]
            objects.append(entry)
        images.append(
            {
                "subset": item.subset,
                "sha256": hashlib.sha256(data).hexdigest(),
                "size": list(item.media.size),
                "objects": sorted(objects, key=json.dumps),
            }
        )
    json.dump({"categories": names, "images": images}, sys.stdout)


if __name__ == "__main__":
    command, path = sys.argv[1], Path(sys.argv[2])
    write(path) if command == "write" else read(path)
