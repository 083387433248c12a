"""Ultralytics' reading of a YOLO dataset folder, run in .venv-ultralytics (tests/ultralytics/requirements.txt).

``read-yolo DIR``: what Ultralytics' own dataset code takes from ``DIR/data.yaml`` (the check a
training starts with, then its label cache), as JSON on stdout: per image its sha256 and objects
with class name and pixel corners, in the same shape as supervision_io.py's ``read-yolo``.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

# Nothing may reach the network, and the settings file must not land in the user's home.
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "0")
os.environ.setdefault("YOLO_VERBOSE", "0")
os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="ultralytics-config-"))

from ultralytics.data.dataset import YOLODataset
from ultralytics.data.utils import check_det_dataset


def read_yolo(folder: Path) -> list[dict[str, Any]]:
    data = check_det_dataset(str(folder / "data.yaml"))
    names = data["names"]
    found: dict[str, dict[str, Any]] = {}
    for split in ("train", "val", "test"):
        source = data.get(split)
        if not source or (split == "val" and source == data.get("train")):
            continue
        dataset = YOLODataset(img_path=source, data=data, task="detect", augment=False)
        for label in dataset.labels:
            path = Path(label["im_file"])
            height, width = label["shape"]
            objects = []
            for cls, (cx, cy, w, h) in zip(label["cls"].reshape(-1), label["bboxes"], strict=True):
                corners = [(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height]
                objects.append({"class": names[int(cls)], "xyxy": [float(v) for v in corners]})
            sha = hashlib.sha256(path.read_bytes()).hexdigest()
            found.setdefault(sha, {"sha256": sha, "objects": []})["objects"] += objects
    return list(found.values())


if __name__ == "__main__":
    command, path = sys.argv[1], Path(sys.argv[2])
    if command != "read-yolo":
        raise SystemExit(f"unknown command {command!r}")
    json.dump(read_yolo(path), sys.stdout)
