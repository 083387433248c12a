"""The Ultralytics plug-in's dataset conversion, read back by Ultralytics' own dataset check and
loader, and its answers to hyperparameters and base models that cannot train. The plug-in's code
runs in .venv-ultralytics (tests/ultralytics/plugin_probe.py), as in the trainer."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from google.protobuf import json_format

from tests.ultralytics.conftest import HERE, PYTHON
from visionloop.common.v1 import annotation_pb2, geometry_pb2
from visionloop.lib import shapes

pytestmark = pytest.mark.skipif(not PYTHON.exists(), reason=f"{PYTHON} is missing (scripts/bootstrap builds it)")
DETECT, SEGMENT = "ultralytics-detect", "ultralytics-segment"
WIDTH, HEIGHT = 100, 80
WEED, STEM, LEAF = (
    {"id": "c-weed", "name": "weed", "type": "box"},
    {"id": "c-stem", "name": "stem", "type": "point"},
    {"id": "c-leaf", "name": "leaf", "type": "segmentation"},
)


def probe(command: str, case: Any, folder: Path) -> Any:
    path = folder / f"{command}.json"
    path.write_text(json.dumps(case))
    done = subprocess.run(
        [str(PYTHON), str(HERE / "plugin_probe.py"), command, str(path)], capture_output=True, text=True, timeout=300
    )
    if done.returncode != 0:
        raise RuntimeError(f"plugin_probe.py {command} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout)


def annotation(category: dict[str, str], crowd: bool = False, **shape: Any) -> dict[str, Any]:
    made = annotation_pb2.Annotation(category_id=category["id"], shape=geometry_pb2.Shape(**shape), crowd=crowd)
    return json_format.MessageToDict(made)


def box(x: float, y: float, w: float, h: float) -> geometry_pb2.Box:
    return geometry_pb2.Box(x=x, y=y, width=w, height=h)


def polygon(*points: tuple[float, float]) -> geometry_pb2.Polygon:
    return geometry_pb2.Polygon(points=[geometry_pb2.Point(x=x, y=y) for x, y in points])


def image_file(folder: Path, name: str) -> Path:
    pixels = np.random.default_rng(len(name)).integers(0, 255, (HEIGHT, WIDTH, 3), np.uint8)
    path = folder / name
    assert cv2.imwrite(str(path), pixels)
    return path


def entry(image_id: str, path: Path, *annotations: dict[str, Any]) -> dict[str, Any]:
    return {"id": image_id, "path": str(path), "width": WIDTH, "height": HEIGHT, "annotations": list(annotations)}


def close(found: list[list[float]], expected: list[list[float]]) -> bool:
    return np.allclose(np.array(found, float), np.array(expected, float), atol=0.01)


def test_detect_labels_read_back_by_ultralytics(tmp_path: Path) -> None:
    jpeg, png = image_file(tmp_path, "a.jpg"), image_file(tmp_path, "b.png")
    broken = tmp_path / "c.jpg"
    broken.write_bytes(jpeg.read_bytes()[:200])  # damaged on disk since download: left out
    train = [
        entry(
            "a",
            jpeg,
            annotation(WEED, box=box(10, 10, 20, 30)),
            annotation(WEED, box=box(90, 70, 20, 20)),  # cut by the frame: clipped
            annotation(WEED, box=box(120, 10, 5, 5)),  # outside the frame: no object
            annotation(STEM, point=geometry_pb2.Point(x=50, y=40)),  # a point_size box around it
            annotation(WEED, crowd=True, box=box(0, 0, 50, 50)),  # a crowd region: no object
            annotation({"id": "c-other"}, box=box(0, 0, 5, 5)),  # a category the model does not learn
            annotation(WEED, polygon=polygon((60, 10), (80, 10), (70, 30))),  # an outline gives its box
        ),
        entry("broken", broken, annotation(WEED, box=box(10, 10, 20, 30))),
    ]
    val = [entry("b", png, annotation(STEM, point=geometry_pb2.Point(x=2, y=2)))]  # point box clipped at 0
    case = {
        "folder": str(tmp_path / "dataset"),
        "train": train,
        "val": val,
        "categories": [WEED, STEM],
        "task": "detect",
        "point_size": 12.0,
    }
    found = probe("dataset", case, tmp_path)
    assert found["names"] == {"0": "weed", "1": "stem"}
    assert sorted(found["images"]) == ["a", "b"]
    a, b = found["images"]["a"], found["images"]["b"]
    assert (a["split"], a["file"], b["split"], b["file"]) == ("train", "a.jpg", "val", "b.png")
    assert a["classes"] == [0, 0, 1, 0]
    assert close(a["boxes"], [[10, 10, 30, 40], [90, 70, 100, 80], [44, 34, 56, 46], [60, 10, 80, 30]])
    assert b["classes"] == [1]
    assert close(b["boxes"], [[0, 0, 8, 8]])
    assert (tmp_path / "dataset" / "images" / "train" / "a.jpg").is_symlink()  # an upright JPEG is linked


def test_segment_labels_read_back_by_ultralytics(tmp_path: Path) -> None:
    pixels = np.zeros((HEIGHT, WIDTH), np.uint8)
    pixels[20:40, 30:70] = 1
    mask = shapes.encode_mask(pixels.astype(bool))
    two = geometry_pb2.MultiPolygon(
        polygons=[polygon((5, 5), (25, 5), (25, 25), (5, 25)), polygon((60, 50), (90, 50), (90, 70), (60, 70))]
    )
    triangle = ((10, 50), (40, 50), (25, 75))
    train = [
        entry(
            "a",
            image_file(tmp_path, "a.png"),
            annotation(LEAF, polygon=polygon(*triangle)),
            annotation(LEAF, multi_polygon=two),  # two parts joined into one outline
            annotation(LEAF, mask=mask),  # a mask's outline
            annotation(LEAF, box=box(70, 5, 20, 10)),  # a box as its rectangle
            annotation(LEAF, point=geometry_pb2.Point(x=5, y=5)),  # no area: no object
        )
    ]
    case = {
        "folder": str(tmp_path / "dataset"),
        "train": train,
        "val": [],
        "categories": [LEAF],
        "task": "segment",
        "point_size": 0.0,
    }
    found = probe("dataset", case, tmp_path)
    assert found["val"] == found["val"].replace("images/val", "images/train")  # no held-out: training images
    a = found["images"]["a"]
    assert a["classes"] == [0, 0, 0, 0]
    assert len(a["outlines"]) == 4
    triangle_out, joined, from_mask, rectangle = a["outlines"]
    assert close(triangle_out, [list(p) for p in triangle])
    # Both parts' corners are in the joined outline, and it spans both.
    corners = {(x, y) for x, y in (np.array(joined).round(1)).tolist()}
    assert {(5, 5), (25, 25), (60, 50), (90, 70)} <= corners, joined
    outline = np.array(from_mask)
    assert close(
        [[outline[:, 0].min(), outline[:, 1].min(), outline[:, 0].max(), outline[:, 1].max()]], [[30, 20, 69, 39]]
    )
    assert close(rectangle, [[70, 5], [90, 5], [90, 15], [70, 15]])
    assert close(a["boxes"][3:], [[70, 5, 90, 15]])


def test_verify_names_what_cannot_train(tmp_path: Path) -> None:
    cases = [
        {"variant": DETECT, "hyperparameters": {}},
        {"variant": DETECT, "hyperparameters": {"optimizer": "Bogus"}},
        {"variant": SEGMENT, "hyperparameters": {"model": "yolov8n.yaml"}},
        {"variant": DETECT, "hyperparameters": {"model": "yolov8n-seg.yaml"}},
        {"variant": DETECT, "hyperparameters": {"model": "no-such-model.yaml"}},
        {"variant": DETECT, "hyperparameters": {"model": "../weights/yolov8n.pt"}},
        {"variant": DETECT, "hyperparameters": {"epochs": 0, "learning_rate": 2.0}},
        {"variant": DETECT, "hyperparameters": {"resolution": 100}},
        {"variant": DETECT, "hyperparameters": {"learning_rate": 0.001}},
        {"variant": "ultralytics-classify", "hyperparameters": {}},
    ]
    fine, optimizer, seg_yaml, detect_yaml, unknown, pt, ranges, resolution, auto_lr, variant = probe(
        "verify", cases, tmp_path
    )
    assert (fine["errors"], fine["warnings"]) == ([], [])
    assert fine["corrected"]["model"] == "yolov8n.yaml"
    assert optimizer["errors"] == [
        "optimizer 'Bogus' is not one of auto, SGD, MuSGD, Adam, Adamax, AdamW, NAdam, RAdam, RMSprop"
    ]
    assert seg_yaml["errors"] == ["model 'yolov8n.yaml' builds a detect model; this variant trains segment models"]
    assert detect_yaml["errors"] == [
        "model 'yolov8n-seg.yaml' builds a segment model; this variant trains detect models"
    ]
    assert unknown["errors"] == [
        "model 'no-such-model.yaml' is neither an architecture yaml Ultralytics ships (yolov8n.yaml, ...) nor a .pt"
    ]
    assert pt["errors"] == [
        "model '../weights/yolov8n.pt' is a .pt file, and TRAINER_ULTRALYTICS_WEIGHTS_DIR is not set on this trainer"
    ]
    assert len(ranges["errors"]) == 2, ranges
    assert any("epochs" in e for e in ranges["errors"]), ranges
    assert any("learning_rate" in e for e in ranges["errors"]), ranges
    assert resolution["errors"] == []
    assert resolution["corrected"]["resolution"] == 96
    assert resolution["warnings"] == ["resolution 100 is not a multiple of 32 (YOLO's stride); using 96"]
    assert auto_lr["warnings"] == [
        "optimizer auto picks its own learning rate; learning_rate counts with a named optimizer"
    ]
    assert variant["errors"], variant


def test_cannot_train_from_what_cannot_work(tmp_path: Path) -> None:
    """Base models and ``model`` values a retry cannot help are CannotTrain, with the reason."""
    detect_base = tmp_path / "detect-base"
    detect_base.mkdir()
    (detect_base / "model.json").write_text(json.dumps({"variant": DETECT, "format": "pytorch"}))
    (detect_base / "model.pt").write_bytes(b"not a model file")
    reference_base = tmp_path / "reference-base"
    reference_base.mkdir()
    (reference_base / "model.json").write_text(json.dumps({"variant": "centernet", "format": "pytorch"}))
    cases = [
        {"variant": SEGMENT, "hyperparameters": {}, "folder": str(tmp_path / "t1"), "base_model": str(detect_base)},
        {"variant": DETECT, "hyperparameters": {}, "folder": str(tmp_path / "t2"), "base_model": str(detect_base)},
        {"variant": DETECT, "hyperparameters": {}, "folder": str(tmp_path / "t3"), "base_model": str(reference_base)},
        {"variant": DETECT, "hyperparameters": {"model": "yolov8n.pt"}, "folder": str(tmp_path / "t4")},
        {"variant": SEGMENT, "hyperparameters": {}, "folder": str(tmp_path / "t5")},
    ]
    other_variant, damaged, reference, pt, fine = probe("start", cases, tmp_path)
    assert other_variant == {
        "cannot_train": "the base model is a ultralytics-detect; ultralytics-segment continues only from "
        "ultralytics-segment models: train without a base model to start from `model` (yolov8n-seg.yaml)"
    }
    assert damaged == {
        "cannot_train": "the base model cannot be trained on: model.pt is not a model file of the Ultralytics "
        "trainer (no weights-only file)"
    }
    assert reference["cannot_train"].startswith("the base model is a centernet;"), reference
    no_folder = "is a .pt file, and TRAINER_ULTRALYTICS_WEIGHTS_DIR is not set on this trainer"
    assert pt == {"cannot_train": f"model 'yolov8n.pt' {no_folder}"}
    assert fine == {"start": "yolov8n-seg.yaml"}
