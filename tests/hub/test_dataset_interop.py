"""Datasets as other tools write and read them: datumaro's COCO and supervision's YOLO import with
nothing lost, and VisionLoop's exports read the same in datumaro, supervision, pycocotools and
Ultralytics.

The tools run in .venv-formats (tests/formats/), Ultralytics in .venv-ultralytics; pycocotools runs here.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from pycocotools import mask as coco_mask
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from tests.formats import tools
from tests.hub.conftest import HubClient
from tests.hub.test_datasets import COCO as COCO_FORMAT
from tests.hub.test_datasets import YOLO, categories, export_zip, import_zip, list_images
from visionloop.common.v1 import category_pb2, geometry_pb2
from visionloop.lib import shapes
from visionloop.lib.evaluation import Prediction, evaluate, truths_from_annotations
from visionloop.loop.v1 import annotation_service_pb2 as pb
from visionloop.loop.v1 import project_service_pb2 as ppb


@pytest.fixture(scope="session")
def datumaro_coco(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """datumaro's COCO export: two subsets, repeated base names, polygons, two outlines, crowd RLE."""
    folder = tmp_path_factory.mktemp("datumaro") / "coco"
    tools.run("datumaro_coco.py", "write", folder)
    return folder


@pytest.fixture(scope="session")
def supervision_yolo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("supervision") / "yolo"
    tools.run("supervision_io.py", "write-yolo", folder)
    return folder


def coco_objects(folder: Path) -> dict[str, list[dict[str, Any]]]:
    """Every annotation of a COCO folder by image sha256, read by pycocotools, with its mask."""
    found: dict[str, list[dict[str, Any]]] = {}
    for path in sorted((folder / "annotations").glob("instances_*.json")):
        images = folder / "images" / path.stem.removeprefix("instances_")
        with contextlib.redirect_stdout(io.StringIO()):
            coco = COCO(str(path))
        names = {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())}
        for image in coco.loadImgs(coco.getImgIds()):
            sha = hashlib.sha256((images / image["file_name"]).read_bytes()).hexdigest()
            for ann in coco.loadAnns(coco.getAnnIds(imgIds=image["id"])):
                found.setdefault(sha, []).append(
                    {
                        "category": names[ann["category_id"]],
                        "bbox": [round(v, 3) for v in ann["bbox"]],
                        "crowd": ann["iscrowd"],
                        "mask": coco.annToMask(ann) if ann["segmentation"] else None,
                        "segmentation": ann["segmentation"] if isinstance(ann["segmentation"], list) else "rle",
                    }
                )
    return found


def same_objects(left: list[dict[str, Any]], right: list[dict[str, Any]]) -> bool:
    def key(entry: dict[str, Any]) -> tuple[Any, ...]:
        mask = entry["mask"]
        digest = hashlib.sha256(np.ascontiguousarray(mask).tobytes()).hexdigest() if mask is not None else ""
        return (entry["category"], tuple(entry["bbox"]), entry["crowd"], digest, json.dumps(entry["segmentation"]))

    return Counter(map(key, left)) == Counter(map(key, right))


async def stored(hub: HubClient, ref: ppb.ProjectRef) -> dict[str, tuple[tuple[str, ...], list[Any]]]:
    """Each image's tags and annotations, by sha256."""
    found = {}
    for image in await list_images(hub, ref):
        listed = await hub.annotations.ListAnnotations(pb.ListAnnotationsRequest(ref=ref, image_id=image.id))
        found[image.id] = (tuple(image.tags), list(listed.annotations))
    return found


async def test_coco_written_by_datumaro_imports_whole(
    hub: HubClient, project: ppb.ProjectRef, datumaro_coco: Path, tmp_path: Path
) -> None:
    data = tools.zip_folder(datumaro_coco, tmp_path / "datumaro.zip", top="my-dataset")
    result = await import_zip(hub, project, data)

    expected = coco_objects(datumaro_coco)
    assert len(expected) == 5  # both subsets, both field_a/frame_001.jpg and field_b/frame_001.jpg
    assert list(result.warnings) == []
    assert (result.images_added, result.images_duplicate, result.images_skipped) == (5, 0, 0)
    assert result.annotations_added == sum(map(len, expected.values())) == 9
    assert {(c.name, c.type) for c in await categories(hub, project)} == {
        ("weed", category_pb2.CATEGORY_TYPE_BOX),
        ("leaf", category_pb2.CATEGORY_TYPE_SEGMENTATION),  # it has outlines
    }

    listing = tools.run("datumaro_coco.py", "read", datumaro_coco)
    subsets = {image["sha256"]: image["subset"] for image in listing["images"]}
    kinds: Counter[tuple[str, bool]] = Counter()
    for sha, (tags, listed) in (await stored(hub, project)).items():
        # the subset is a tag; val is also held out from training (test)
        assert tags == {"train": ("train",), "val": ("test", "val")}[subsets[sha]]
        objects = []
        for annotation in listed:
            kind = annotation.shape.WhichOneof("kind")
            kinds[(kind, annotation.crowd)] += 1
            entry: dict[str, Any] = {"category": annotation.category_name, "crowd": int(annotation.crowd)}
            entry["bbox"] = [round(v, 3) for v in shapes.shape_box(annotation.shape)]
            entry["mask"] = shapes.decode_mask(annotation.shape.mask) if kind == "mask" else None
            entry["segmentation"] = "rle" if kind == "mask" else []
            if kind in ("polygon", "multi_polygon"):
                outlines = shapes.outlines(annotation.shape)
                entry["segmentation"] = [[v for p in o.points for v in (p.x, p.y)] for o in outlines]
                entry["mask"] = next(e["mask"] for e in expected[sha] if e["segmentation"] == entry["segmentation"])
            objects.append(entry)
        assert same_objects(objects, expected[sha]), sha
    # crowd regions stay crowd regions (as masks), two outlines stay one object
    assert kinds == {("box", False): 4, ("polygon", False): 2, ("multi_polygon", False): 1, ("mask", True): 2}


async def test_coco_export_reads_the_same_in_datumaro_supervision_and_pycocotools(
    hub: HubClient, project: ppb.ProjectRef, datumaro_coco: Path, tmp_path: Path
) -> None:
    await import_zip(hub, project, tools.zip_folder(datumaro_coco, tmp_path / "datumaro.zip"))
    exported = tools.unzip(await export_zip(hub, project, COCO_FORMAT), tmp_path)
    assert sorted(p.name for p in (exported / "annotations").iterdir()) == [
        "instances_train.json",
        "instances_val.json",
    ]

    original = tools.run("datumaro_coco.py", "read", datumaro_coco)
    again = tools.run("datumaro_coco.py", "read", exported)
    assert again["categories"] == original["categories"]
    assert sorted(again["images"], key=json.dumps) == sorted(original["images"], key=json.dumps)

    read_back = tools.run("supervision_io.py", "read-coco", exported)
    assert sorted(read_back, key=json.dumps) == sorted(
        tools.run("supervision_io.py", "read-coco", datumaro_coco), key=json.dumps
    )

    ours, theirs = coco_objects(exported), coco_objects(datumaro_coco)
    assert ours.keys() == theirs.keys()
    for sha, objects in ours.items():
        assert same_objects(objects, theirs[sha]), sha


async def test_crowd_is_ignored_by_the_evaluator_as_by_pycocotools(
    hub: HubClient, project: ppb.ProjectRef, datumaro_coco: Path, tmp_path: Path
) -> None:
    """Detections of every object and a few inside the crowd regions: mAP 1 for both."""
    await import_zip(hub, project, tools.zip_folder(datumaro_coco, tmp_path / "datumaro.zip"))
    names = [c.name for c in await categories(hub, project)]
    truths, predictions = [], []
    for _, listed in (await stored(hub, project)).values():
        image_truths = truths_from_annotations(listed)
        image_predictions = [Prediction(t.category, 0.9, t.box) for t in image_truths if not t.crowd]
        for t in image_truths:
            if t.crowd:
                x, y, w, h = t.box
                image_predictions += [Prediction(t.category, 0.95, (x + 1, y + 1, w / 3, h / 3))] * 2
        truths.append(image_truths)
        predictions.append(image_predictions)
    assert sum(t.crowd for image in truths for t in image) == 2
    ours = evaluate(truths, predictions, names)

    exported = tools.unzip(await export_zip(hub, project, COCO_FORMAT), tmp_path)
    merged: dict[str, Any] = {"images": [], "annotations": [], "categories": []}
    shas = {}
    for path in sorted((exported / "annotations").glob("instances_*.json")):
        doc = json.loads(path.read_text())
        offset = len(merged["images"])
        for image in doc["images"]:
            shas[image["file_name"].split(".")[0]] = image["id"] + offset
            merged["images"].append({**image, "id": image["id"] + offset})
        merged["annotations"] += [{**a, "image_id": a["image_id"] + offset} for a in doc["annotations"]]
        merged["categories"] = doc["categories"]
    category_ids = {c["name"]: c["id"] for c in merged["categories"]}
    results = [
        {"image_id": shas[sha], "category_id": category_ids[p.category], "bbox": list(p.box), "score": p.score}
        for sha, image_predictions in zip((await stored(hub, project)).keys(), predictions, strict=True)
        for p in image_predictions
    ]
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = merged
        gt.createIndex()
        coco_eval = COCOeval(gt, gt.loadRes(results), "bbox")
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    assert coco_eval.stats[1] == pytest.approx(1.0)
    assert ours.map50 == pytest.approx(coco_eval.stats[1], abs=1e-3)
    assert ours.map50_95 == pytest.approx(coco_eval.stats[0], abs=1e-3)
    assert sum(c.fp for c in ours.classes.values()) == 0


def yolo_boxes(listing: list[dict[str, Any]]) -> dict[str, Counter[tuple[Any, ...]]]:
    """Objects by image, coordinates to a tenth of a pixel (YOLO keeps 5 or 6 decimals of a fraction)."""
    return {
        image["sha256"]: Counter((o["class"], *(round(v, 1) for v in o["xyxy"])) for o in image["objects"])
        for image in listing
    }


async def test_yolo_written_by_supervision_round_trips(
    hub: HubClient, project: ppb.ProjectRef, supervision_yolo: Path, tmp_path: Path
) -> None:
    assert "\\xE4" in (supervision_yolo / "data.yaml").read_text()  # PyYAML's escape of "ä"
    result = await import_zip(hub, project, tools.zip_folder(supervision_yolo, tmp_path / "sv.zip"), fmt=YOLO)
    original = yolo_boxes(tools.run("supervision_io.py", "read-yolo", supervision_yolo))
    assert list(result.warnings) == []
    assert (result.images_added, result.images_skipped) == (len(original), 0)
    assert result.annotations_added == sum(sum(c.values()) for c in original.values()) > 0
    assert [c.name for c in await categories(hub, project)] == ["Blätter", "weed", "stone"]

    found = {}
    for sha, (_, listed) in (await stored(hub, project)).items():
        found[sha] = Counter(
            (
                a.category_name,
                *(round(v, 1) for v in (a.shape.box.x, a.shape.box.y)),
                round(a.shape.box.x + a.shape.box.width, 1),
                round(a.shape.box.y + a.shape.box.height, 1),
            )
            for a in listed
        )
    assert found == original

    exported = tools.unzip(await export_zip(hub, project, YOLO), tmp_path)
    assert yolo_boxes(tools.run("supervision_io.py", "read-yolo", exported)) == original
    # Ultralytics' own dataset check and label cache, as a training would start from the export.
    read = tools.run("ultralytics_io.py", "read-yolo", exported, python=tools.ULTRALYTICS_PYTHON)
    assert yolo_boxes(read) == original


async def test_empty_project_exports_valid_datasets(hub: HubClient, project: ppb.ProjectRef, tmp_path: Path) -> None:
    yolo = tools.unzip(await export_zip(hub, project, YOLO), tmp_path / "yolo")
    doc = yaml.safe_load((yolo / "data.yaml").read_text())
    assert (doc["names"], doc["nc"]) == ({}, 0)
    coco = tools.unzip(await export_zip(hub, project, COCO_FORMAT), tmp_path / "coco")
    listing = tools.run("datumaro_coco.py", "read", coco)
    assert listing == {"categories": [], "images": []}


def test_masks_keep_coco_rle_exactly() -> None:
    rng = np.random.default_rng(5)
    for _ in range(20):
        height, width = (int(v) for v in rng.integers(1, 30, 2))
        pixels = (rng.random((height, width)) < rng.random()).astype(np.uint8)
        compressed = coco_mask.encode(np.asfortranarray(pixels))
        mask = shapes.from_coco_rle({"size": [height, width], "counts": compressed["counts"].decode()}, width, height)
        assert (shapes.decode_mask(mask) == pixels).all()
        assert (coco_mask.decode(coco_mask.frPyObjects(shapes.to_coco_rle(mask), height, width)) == pixels).all()
        assert shapes.mask_area(mask) == coco_mask.area(compressed)
        if pixels.any():
            assert list(shapes.mask_box(mask)) == list(coco_mask.toBbox(compressed))
    with pytest.raises(shapes.BadMask, match="runs cover 7 pixels"):
        shapes.from_coco_rle({"size": [2, 3], "counts": [3, 4]}, 3, 2)
    with pytest.raises(shapes.BadMask, match="not the image's"):
        shapes.from_coco_rle({"size": [3, 2], "counts": [6]}, 3, 2)
    empty = geometry_pb2.Mask(width=3, height=2, counts=[6])
    assert shapes.mask_box(empty) is None
