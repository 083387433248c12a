"""Runs inside .venv-ultralytics: the Ultralytics trainer plug-in's own code on cases a test gives.

    .venv-ultralytics/bin/python tests/ultralytics/plugin_probe.py dataset CASE.json
    .venv-ultralytics/bin/python tests/ultralytics/plugin_probe.py verify CASE.json
    .venv-ultralytics/bin/python tests/ultralytics/plugin_probe.py start CASE.json

``dataset``: ``dataset.write`` on the case's images (id, path, width, height, annotations as the
protobuf JSON), categories, task and point size into ``folder``, then what Ultralytics' own
dataset check and loader read back (``YOLODataset``, as a training starts): per image id its
classes, boxes (x1, y1, x2, y2 in pixels) and, for segment, outlines (pixels; Ultralytics
resamples them to a fixed point count). ``verify``: ``UltralyticsTrainer.verify`` per case
(variant, hyperparameters). ``start``: what a training of the case would start from, or the
``CannotTrain`` message. Answers are JSON on stdout.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "0")
os.environ.setdefault("YOLO_VERBOSE", "0")
os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="ultralytics-config-"))

from google.protobuf import json_format

from visionloop.common.v1 import annotation_pb2
from visionloop.server.trainer.plugin import CannotTrain, CategoryInfo, TrainImage, TrainJob
from visionloop.server.trainer.ultralytics_plugin import dataset


def _images(entries: list[dict[str, Any]]) -> tuple[TrainImage, ...]:
    return tuple(
        TrainImage(
            id=entry["id"],
            path=Path(entry["path"]),
            width=entry["width"],
            height=entry["height"],
            annotations=tuple(json_format.ParseDict(a, annotation_pb2.Annotation()) for a in entry["annotations"]),
        )
        for entry in entries
    )


def read_dataset(case: dict[str, Any]) -> dict[str, Any]:
    from ultralytics.data.dataset import YOLODataset
    from ultralytics.data.utils import check_det_dataset

    categories = [CategoryInfo(**c) for c in case["categories"]]
    folder = Path(case["folder"])
    data_yaml = dataset.write(
        folder, _images(case["train"]), _images(case["val"]), categories, case["task"], case["point_size"]
    )
    data = check_det_dataset(str(data_yaml))
    found: dict[str, Any] = {"names": data["names"], "val": data["val"], "images": {}}
    for split in ("train", "val"):
        loaded = YOLODataset(img_path=data[split], data=data, task=case["task"], augment=False)
        for label in loaded.labels:
            height, width = label["shape"]
            boxes = [
                [(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height]
                for cx, cy, w, h in label["bboxes"].tolist()
            ]
            outlines = [(segment * [width, height]).tolist() for segment in label["segments"]]
            found["images"][Path(label["im_file"]).stem] = {
                "split": split,
                "file": Path(label["im_file"]).name,
                "classes": [int(k) for k in label["cls"].reshape(-1)],
                "boxes": boxes,
                "outlines": outlines,
            }
    return found


def verify(cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    from visionloop.server.trainer.ultralytics_plugin.plugin import UltralyticsTrainer

    trainer = UltralyticsTrainer()
    answers = []
    for case in cases:
        result = trainer.verify(case["variant"], case["hyperparameters"])
        answers.append(
            {"errors": list(result.errors), "warnings": list(result.warnings), "corrected": result.corrected}
        )
    return answers


def start(cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Where each case's training would start (the plug-in's ``_start``), or why it cannot."""
    from visionloop.server.trainer.ultralytics_plugin.plugin import TASKS, UltralyticsTrainer

    trainer = UltralyticsTrainer()
    answers = []
    for case in cases:
        defaults = trainer.verify(case["variant"], case["hyperparameters"]).corrected
        job = TrainJob(
            training_id="probe",
            variant=case["variant"],
            hyperparameters=defaults,
            categories=(),
            folder=Path(case["folder"]),
            base_model=Path(case["base_model"]) if case.get("base_model") else None,
        )
        try:
            answers.append({"start": trainer._start(job, TASKS[case["variant"]])})
        except CannotTrain as error:
            answers.append({"cannot_train": str(error)})
    return answers


if __name__ == "__main__":
    command, case = sys.argv[1], json.loads(Path(sys.argv[2]).read_text())
    commands = {"dataset": read_dataset, "verify": verify, "start": start}
    if command not in commands:
        raise SystemExit(f"unknown command {command!r}")
    json.dump(commands[command](case), sys.stdout)
