"""Runs inside .venv-ultralytics: trains tiny YOLOv8 models with Ultralytics, exports them to ONNX
with Ultralytics' own exporter and records what ``YOLO(export).predict`` answers on test frames.

    .venv-ultralytics/bin/python tests/ultralytics/make_exports.py OUT_DIR

Nothing is downloaded: models are built from Ultralytics' yaml files, trained for a few epochs on
a generated set of coloured shapes (so their outputs are not noise), and YOLO_OFFLINE keeps
Ultralytics from reaching the network. OUT_DIR receives ``<name>.onnx`` per export, the test
frames (``frames/*.png``) and ``predictions.json``: per export and frame the boxes (x1, y1, x2, y2
in the frame's pixels), scores, classes, masks (the contract's row-major RLE at the frame's size)
and, for classifiers, the top-1 class and its probability.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "0")
os.environ.setdefault("YOLO_VERBOSE", "0")

import cv2
import numpy as np

IMGSZ = 160
CLASSES = ("red", "blue")  # a shape's class is its colour
COLOURS = {"red": (40, 40, 220), "blue": (220, 60, 40)}  # BGR
FRAME_SIZES = ((200, 150), (150, 200), (160, 160), (320, 240))  # (width, height): square, wide, tall
CONF, IOU, MAX_DET = 0.25, 0.7, 300  # Ultralytics' predict defaults, which import writes into model.json


def _scene(rng: np.random.Generator, width: int, height: int) -> tuple[np.ndarray, list[tuple[int, np.ndarray]]]:
    """Soil-like noise with 1-3 coloured ellipses; returns the image and (class, polygon) per shape."""
    image = rng.normal(110, 18, (height, width, 3)).clip(0, 255).astype(np.uint8)
    image = cv2.GaussianBlur(image, (3, 3), 0)
    shapes = []
    for _ in range(int(rng.integers(1, 4))):
        cls = int(rng.integers(0, len(CLASSES)))
        axes = (int(rng.integers(10, width // 5)), int(rng.integers(10, height // 5)))
        centre = (int(rng.integers(axes[0], width - axes[0])), int(rng.integers(axes[1], height - axes[1])))
        angle = int(rng.integers(0, 180))
        polygon = cv2.ellipse2Poly(centre, axes, angle, 0, 360, 10)
        cv2.fillPoly(image, [polygon], COLOURS[CLASSES[cls]])
        shapes.append((cls, polygon.astype(np.float64)))
    return image, shapes


def _dataset(root: Path, count: int = 32) -> Path:
    """A YOLO segmentation dataset (polygons; detection trains on their boxes) and data.yaml."""
    rng = np.random.default_rng(0)
    for subset in ("train", "val"):
        (root / "images" / subset).mkdir(parents=True, exist_ok=True)
        (root / "labels" / subset).mkdir(parents=True, exist_ok=True)
        for index in range(count if subset == "train" else 8):
            width, height = FRAME_SIZES[index % len(FRAME_SIZES)]
            image, shapes = _scene(rng, width, height)
            cv2.imwrite(str(root / "images" / subset / f"{index}.png"), image)
            lines = []
            for cls, polygon in shapes:
                points = (polygon / [width, height]).clip(0, 1).reshape(-1)
                lines.append(" ".join([str(cls), *(f"{value:.5f}" for value in points)]))
            (root / "labels" / subset / f"{index}.txt").write_text("\n".join(lines) + "\n")
    data = root / "data.yaml"
    names = "\n".join(f"  {i}: {name}" for i, name in enumerate(CLASSES))
    data.write_text(f"path: {root}\ntrain: images/train\nval: images/val\nnames:\n{names}\n")
    return data


def _classify_dataset(root: Path, count: int = 24) -> Path:
    """A folder-per-class dataset: one large shape whose colour is the class."""
    rng = np.random.default_rng(1)
    for subset in ("train", "val"):
        for cls, name in enumerate(CLASSES):
            folder = root / subset / name
            folder.mkdir(parents=True, exist_ok=True)
            for index in range(count if subset == "train" else 4):
                image = rng.normal(110, 18, (96, 96, 3)).clip(0, 255).astype(np.uint8)
                centre = (int(rng.integers(30, 66)), int(rng.integers(30, 66)))
                cv2.circle(image, centre, int(rng.integers(18, 30)), COLOURS[CLASSES[cls]], -1)
                cv2.imwrite(str(folder / f"{index}.png"), image)
    return root


def _train(yaml: str, data: Path, out: Path, name: str, epochs: int) -> object:
    from ultralytics import YOLO

    model = YOLO(yaml)
    model.train(
        data=str(data),
        epochs=epochs,
        imgsz=IMGSZ,
        batch=8,
        workers=0,
        device="cpu",
        plots=False,
        amp=False,
        project=str(out / "runs"),
        name=name,
        exist_ok=True,
        seed=0,
        deterministic=True,
        verbose=False,
        val=False,
    )
    return model


def _export(model: object, out: Path, name: str, **options: object) -> Path:
    exported = Path(model.export(format="onnx", imgsz=IMGSZ, simplify=True, **options))  # type: ignore[attr-defined]
    target = out / f"{name}.onnx"
    exported.replace(target)
    return target


def _predictions(export: Path, task: str, frames: list[Path]) -> dict[str, object]:
    import torch
    from ultralytics import YOLO
    from ultralytics.utils import ops

    from visionloop.lib.shapes import encode_mask  # the project is installed here too: the contract's RLE

    model = YOLO(str(export), task=task)
    answers: dict[str, object] = {}
    for frame in frames:
        result = model.predict(str(frame), imgsz=IMGSZ, conf=CONF, iou=IOU, max_det=MAX_DET, device="cpu")[0]
        if task == "classify":
            answers[frame.name] = {"top1": int(result.probs.top1), "top1conf": float(result.probs.top1conf)}
            continue
        boxes = result.boxes
        answer: dict[str, object] = {
            "boxes": boxes.xyxy.tolist(),
            "scores": boxes.conf.tolist(),
            "classes": [int(c) for c in boxes.cls.tolist()],
        }
        if task == "segment":
            height, width = result.orig_shape
            if result.masks is None:
                answer["masks"] = []
            else:
                scaled = ops.scale_masks(result.masks.data[None].float(), (height, width))[0] > 0.5
                answer["masks"] = [list(encode_mask(mask.numpy()).counts) for mask in scaled.to(torch.uint8)]
        answers[frame.name] = answer
    return answers


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("YOLO_CONFIG_DIR", str(out / "config"))
    data = _dataset(out / "shapes")
    frames_dir = out / "frames"
    frames_dir.mkdir(exist_ok=True)
    rng = np.random.default_rng(7)
    frames = []
    for index, (width, height) in enumerate(FRAME_SIZES):
        image, _ = _scene(rng, width, height)
        path = frames_dir / f"frame{index}_{width}x{height}.png"
        cv2.imwrite(str(path), image)
        frames.append(path)

    detect = _train("yolov8n.yaml", data, out, "detect", epochs=int(os.environ.get("EPOCHS", "40")))
    exports = {
        "detect_static": (_export(detect, out, "detect_static"), "detect"),
        "detect_dynamic": (_export(detect, out, "detect_dynamic", dynamic=True), "detect"),
    }
    segment = _train("yolov8n-seg.yaml", data, out, "segment", epochs=int(os.environ.get("EPOCHS", "40")))
    exports["segment_static"] = (_export(segment, out, "segment_static"), "segment")
    classify = _train("yolov8n-cls.yaml", _classify_dataset(out / "classes"), out, "classify", epochs=10)
    exports["classify_static"] = (_export(classify, out, "classify_static"), "classify")
    predictions = {name: _predictions(path, task, frames) for name, (path, task) in exports.items()}
    (out / "predictions.json").write_text(json.dumps(predictions))


if __name__ == "__main__":
    main(Path(sys.argv[1]).resolve())
