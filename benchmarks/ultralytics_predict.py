"""The Ultralytics side of benchmarks/ultralytics_benchmark.py; runs inside .venv-ultralytics.

    .venv-ultralytics/bin/python benchmarks/ultralytics_predict.py export WORKDIR
    .venv-ultralytics/bin/python benchmarks/ultralytics_predict.py predict WORKDIR/yolov8n.onnx FRAMES_DIR RUNS

``export`` builds YOLOv8n from Ultralytics' yaml (nothing downloaded; latency does not depend on
the weights) and exports it with ``dynamic=True`` at 640; ``predict`` times stock
``YOLO(export).predict`` on the JPEG files, one per call (latency) and eight per call
(throughput), and prints the figures as JSON.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "0")
os.environ.setdefault("YOLO_VERBOSE", "0")


def export(workdir: Path) -> None:
    os.environ.setdefault("YOLO_CONFIG_DIR", str(workdir / "config"))
    from ultralytics import YOLO

    exported = Path(YOLO("yolov8n.yaml").export(format="onnx", imgsz=640, dynamic=True, simplify=True))
    exported.replace(workdir / "yolov8n.onnx")
    print(json.dumps({"onnx": str(workdir / "yolov8n.onnx")}))


def predict(model_path: Path, frames: Path, runs: int) -> None:
    from ultralytics import YOLO

    files = sorted(str(p) for p in frames.glob("*.jpg"))
    model = YOLO(str(model_path), task="detect")
    for path in files[:10]:  # warm-up: the session, the predictor, first allocations
        model.predict(path, imgsz=640, device="cpu")
    latencies, speeds = [], []
    for index in range(runs):
        started = time.perf_counter()
        result = model.predict(files[index % len(files)], imgsz=640, device="cpu")[0]
        latencies.append(time.perf_counter() - started)
        speeds.append(result.speed)  # Ultralytics' own ms for preprocess, inference, postprocess
    batches = max(1, runs // 8)
    started = time.perf_counter()
    for index in range(batches):
        model.predict([files[(index * 8 + j) % len(files)] for j in range(8)], imgsz=640, device="cpu")
    elapsed = time.perf_counter() - started
    stages = {stage: statistics.median(speed[stage] for speed in speeds) for stage in speeds[0]}
    print(json.dumps({"latencies": latencies, "stages_ms": stages, "batch8_images_per_s": batches * 8 / elapsed}))


if __name__ == "__main__":
    if sys.argv[1] == "export":
        export(Path(sys.argv[2]).resolve())
    else:
        predict(Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]))
