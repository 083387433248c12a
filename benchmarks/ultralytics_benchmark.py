"""Bring-your-own-model benchmark: a dynamic-shape YOLOv8n export from Ultralytics, served by the
detector, next to stock Ultralytics predict and raw ONNX Runtime on the same JPEGs, in one run.

1. Ultralytics (in .venv-ultralytics) builds YOLOv8n from its yaml and exports it with
   ``dynamic=True`` at 640; ``visionloop models import`` logic writes its model zip.
2. (u) stock ``YOLO(export).predict`` on the JPEG files: one image per call (latency) and eight
   per call (throughput), in .venv-ultralytics (the same ONNX Runtime version).
3. (a) a raw ``onnxruntime.InferenceSession`` on the tensors the detector's pre-processing makes
   (640x480, stride-aligned rectangles as Ultralytics makes them): batch 1 and batch 8.
4. (b) ``DetectorService.Detect``, one client, sequential: latency p50/p95
   (target: p50 <= 1.1 x (u) p50).
5. (c) 8 concurrent ``DetectStream``s: throughput, next to (u) and (a) at eight images per call.

Clients send pre-encoded 640x480 JPEGs; Ultralytics reads the same bytes from files (it decodes
with OpenCV). The machine may be shared: the load average before and after is reported.

    .venv/bin/python -m benchmarks.ultralytics_benchmark [--runs 200] [--json ultralytics.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.detector_benchmark import (
    MODEL_NAME,
    OPEN_ADMISSION,
    RawSession,
    Result,
    make_images,
    ms,
    percentile,
    prepare,
    running_detector,
    streams,
    unary,
)
from visionloop.lib.archives import safe_extract
from visionloop.lib.model_format.onnx_import import model_info, write_zip
from visionloop.server.detector.config import DetectorSettings
from visionloop.server.detector.models import read_model_folder

ROOT = Path(__file__).resolve().parents[1]
ULTRALYTICS = ROOT / ".venv-ultralytics" / "bin" / "python"
HELPER = ROOT / "benchmarks" / "ultralytics_predict.py"


def ultralytics(*args: str) -> dict[str, Any]:
    env = {**os.environ, "YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "0", "YOLO_VERBOSE": "0"}
    done = subprocess.run([str(ULTRALYTICS), str(HELPER), *args], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"ultralytics_predict.py {args[0]} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def row(label: str, p50: float | None, throughput: float | None, note: str = "") -> str:
    p50_text = f"{p50:8.1f}" if p50 is not None else "       -"
    rate = f"{throughput:8.1f}" if throughput is not None else "       -"
    return f"| {label:<58} | {p50_text} | {rate} | {note} |"


async def run(args: argparse.Namespace) -> dict[str, Any]:
    if not ULTRALYTICS.exists():
        raise SystemExit(f"{ULTRALYTICS} is missing: scripts/bootstrap installs Ultralytics there")
    work = Path(tempfile.mkdtemp(prefix="visionloop-ultralytics-bench-"))
    before = load()
    export = Path(ultralytics("export", str(work))["onnx"])
    archive = write_zip(export, model_info(export), work / "model.zip")
    folder = work / "model"
    safe_extract(archive, folder)
    info, weights = read_model_folder(folder)
    images = make_images(args.images)
    frames = work / "frames"
    frames.mkdir()
    for index, data in enumerate(images):
        (frames / f"{index:03d}.jpg").write_bytes(data)

    stock = ultralytics("predict", str(export), str(frames), str(args.runs))
    prepared = prepare(images, info.input)
    raw = RawSession(weights, info, images, prepared.tensors)
    results: dict[str, Result] = {
        "raw_single": raw.single(False, args.runs),
        "raw_batch": raw.batched(False, args.runs),
    }
    settings = DetectorSettings(
        port=0, metrics_port=-1, data_dir=work / "detector", model_paths=f"{MODEL_NAME}={folder}", **OPEN_ADMISSION
    )
    async with running_detector(settings) as stub:
        results["unary"] = await unary(stub, images, args.runs)
        results["streams"] = await streams(stub, images, 8, args.per_stream, "(c) detector, 8 DetectStreams")
    stock_again = ultralytics("predict", str(export), str(frames), str(args.runs))  # the load may have moved
    after = load()

    latencies: Sequence[float] = stock["latencies"] + stock_again["latencies"]
    stock_p50 = ms(percentile(latencies, 50))
    stock_rate = statistics.mean([stock["batch8_images_per_s"], stock_again["batch8_images_per_s"]])
    unary_p50 = results["unary"].p50_ms or 0.0
    ratio = unary_p50 / stock_p50
    lines = [
        f"YOLOv8n (from yolov8n.yaml), ONNX dynamic=True, 640x480 JPEGs -> {prepared.tensors[0].shape[1:]} input; "
        f"load average {before} before, {after} after; {os.cpu_count()} CPUs",
        "",
        "| path | p50 ms | images/s | vs Ultralytics |",
        "|---|---:|---:|---|",
        row("(u) Ultralytics YOLO(export).predict, 1 image per call", stock_p50, 1000 / stock_p50),
        row("(u) Ultralytics predict, 8 images per call", None, stock_rate),
        row(
            "(a) raw ONNX Runtime, tensor ready, batch 1",
            results["raw_single"].p50_ms,
            results["raw_single"].images_per_s,
        ),
        row("(a) raw ONNX Runtime, tensor ready, batch 8", None, results["raw_batch"].images_per_s),
        row(
            "(b) detector Detect, unary, 1 client",
            unary_p50,
            results["unary"].images_per_s,
            f"{ratio:.2f}x latency (target <= 1.1x): {'met' if ratio <= 1.1 else 'missed'}",
        ),
        row(
            "(c) detector, 8 DetectStreams",
            None,
            results["streams"].images_per_s,
            f"{(results['streams'].images_per_s or 0) / stock_rate:.2f}x Ultralytics' 8 per call",
        ),
        "",
        f"Ultralytics' own stage medians (ms): {stock['stages_ms']}",
        f"detector Timing medians (ms), unary: {results['unary'].timing_ms}; streams: {results['streams'].timing_ms} "
        f"(mean batch {results['streams'].mean_batch})",
    ]
    print("\n".join(lines))
    report = {
        "load_before": before,
        "load_after": after,
        "ultralytics_p50_ms": stock_p50,
        "ultralytics_batch8_images_per_s": stock_rate,
        "ultralytics_stages_ms": [stock["stages_ms"], stock_again["stages_ms"]],
        "unary_vs_ultralytics": ratio,
        "results": {key: {k: v for k, v in vars(r).items() if k != "latencies"} for key, r in results.items()},
    }
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=200, help="images per latency path")
    parser.add_argument("--per-stream", type=int, default=40, help="frames per DetectStream")
    parser.add_argument("--images", type=int, default=16, help="distinct JPEGs")
    parser.add_argument("--json", default="", help="write the figures here")
    args = parser.parse_args(argv)
    report = asyncio.run(run(args))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0  # a measurement, not a test: the table says whether the target was met


if __name__ == "__main__":
    sys.exit(main())
