"""Admission benchmark: what robots' accepted frames wait as cameras multiply, next to the raw backend.

Without admission control, more cameras than a detector can serve mean later answers for all of them
(every frame queued); with it, the frames beyond a model's queue budget are refused at once with
RESOURCE_EXHAUSTED and the accepted ones keep their latency. This measures it:

1. the raw backend (a bare ``onnxruntime.InferenceSession`` with the detector's session options, fed
   the same JPEGs, decoded and letterboxed as a script would): batch-1 latency p50/p99 and batch-8
   throughput, before and after the detector runs (the machine's speed drifts);
2. the detector as deployed (``visionloop serve detector``, a process of its own) with 8, 32 and
   128 robots, each a camera streaming at a fixed rate through the robot client's ``FrameStream``
   (its own channel, ``DetectStream`` underneath). The rate is chosen so that 8 cameras offer half
   of what the raw backend gets through at batch 8: 32 cameras then offer twice that, 128 eight
   times. Per level: frames offered, accepted frames per second and their latency p50/p99 (submit
   to answer, as the robot sees it), the share refused;
3. with ``--open``, the same levels against a detector whose admission control is opened up (a
   minute's budget), which queues every frame: the detector without admission control.

Run from the repository root::

    .venv/bin/python -m benchmarks.admission_benchmark
    .venv/bin/python -m benchmarks.admission_benchmark --model stub --seconds 10 --json admission.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
from prometheus_client.parser import text_string_to_metric_families

from visionloop.client import FrameResult, FrameStream
from visionloop.common.v1 import image_pb2
from visionloop.detector.v1 import detector_service_pb2 as pb
from visionloop.detector.v1 import detector_service_pb2_grpc
from visionloop.runtime.logging import configure_logging
from visionloop.server.detector.models import read_model_folder

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # also as `python benchmarks/admission_benchmark.py`
    sys.path.insert(0, str(REPO))

from benchmarks.detector_benchmark import (  # noqa: E402  (needs the repository root on sys.path)
    RawSession,
    check,
    make_images,
    model_folder,
    ms,
    percentile,
    prepare,
)
from tests.harness import serve  # noqa: E402

MODEL_NAME = "bench"
LATENCY_TARGET = 3.0  # accepted p99 at the most streams <= 3 x accepted p50 at the fewest
STAGES = ("preprocess", "queue", "inference", "postprocess")  # the detector's Timing of an answer
DRAIN_SECONDS = 60.0  # answers still owed after a level's window; later ones count as lost
# Admission opened up, as detector_benchmark's throughput paths run: every frame is queued.
OPEN = {"DETECTOR_QUEUE_BUDGET_MS": "60000", "DETECTOR_MAX_QUEUED_BATCHES": "64"}


@dataclass
class Raw:
    """The raw backend on the same JPEGs: batch-1 latency and batch-8 throughput."""

    p50_ms: float
    p99_ms: float
    images_per_s: float


def raw_backend(session: RawSession, runs: int, rounds: int = 3) -> Raw:
    """Batch 1 for latency; batch 8 for throughput, the median of ``rounds`` (one slow spell of a
    shared machine would otherwise set every camera's rate)."""
    single = session.single(True, runs)
    rates = [session.batched(True, runs).images_per_s or 0.0 for _ in range(rounds)]
    return Raw(
        ms(percentile(single.latencies, 50)), ms(percentile(single.latencies, 99)), float(statistics.median(rates))
    )


@dataclass
class Level:
    """One number of cameras against one detector, over the measured window."""

    mode: str  # "admission" or "open"
    streams: int
    fps: float
    seconds: float
    offered: int = 0  # frames submitted by the cameras
    sent: int = 0  # frames that left the robots (the rest the robot client dropped: its window was full)
    accepted: int = 0  # answered with detections
    refused: int = 0  # answered RESOURCE_EXHAUSTED (the robot client's stats.busy)
    failed: int = 0  # answered with another error (must stay 0)
    unanswered: int = 0  # sent in the window, no answer by the end (lost with the stream)
    server_refused: float = 0.0  # the detector's own visionloop_detector_refused_frames_total
    limit: float = 0.0  # the model's admission bound at the end of the window (frames)
    frame_ms: float = 0.0  # the model's measured time per frame then
    load_average: float = 0.0  # 1-minute load average at the end of the window
    client_cpu: float = 0.0  # CPU seconds of the benchmark's own process (the cameras) over the window
    detector_cpu: float = 0.0  # CPU seconds of the detector process over the window
    latencies: list[float] = field(default_factory=list, repr=False)  # accepted frames, seconds
    inside: list[float] = field(default_factory=list, repr=False)  # their Timing total: decode to answer built
    stages: dict[str, list[float]] = field(default_factory=dict, repr=False)  # their Timing, per stage

    @property
    def p50_ms(self) -> float | None:
        return ms(percentile(self.latencies, 50)) if self.latencies else None

    @property
    def p99_ms(self) -> float | None:
        return ms(percentile(self.latencies, 99)) if self.latencies else None

    @property
    def inside_p99_ms(self) -> float | None:
        return ms(percentile(self.inside, 99)) if self.inside else None

    @property
    def unsent_share(self) -> float:
        """Frames the robot client dropped before sending (its window full of unanswered frames)."""
        return max(0, self.offered - self.sent) / self.offered if self.offered else 0.0

    @property
    def refused_share(self) -> float:
        return self.refused / self.sent if self.sent else 0.0

    def summary(self) -> dict[str, Any]:
        data = {k: v for k, v in asdict(self).items() if k not in ("latencies", "inside", "stages")}
        stages = {
            stage: {"p50_ms": ms(percentile(values, 50)), "p99_ms": ms(percentile(values, 99))}
            for stage, values in self.stages.items()
        }
        return data | {
            "stages": stages,
            "p50_ms": self.p50_ms,
            "p99_ms": self.p99_ms,
            "detector_p99_ms": self.inside_p99_ms,
            "accepted_per_s": self.accepted / self.seconds,
        }


class Camera:
    """One robot: a FrameStream on its own channel, fed at ``fps`` from a random phase."""

    def __init__(self, target: str, images: list[bytes], fps: float, index: int) -> None:
        self.images, self.fps, self.index = images, fps, index
        self.submitted_at: dict[int, float] = {}
        self.results: list[tuple[int, FrameResult]] = []
        self.stream = FrameStream(
            target, on_result=lambda result: self.results.append((result.frame_id, result)), autoupload="disabled"
        )

    async def run(self, until: float) -> None:
        loop = asyncio.get_running_loop()
        tick = loop.time() + random.uniform(0, 1 / self.fps)  # cameras are not in phase
        frame = self.index * 7
        while tick < until:
            await asyncio.sleep(max(0.0, tick - loop.time()))
            frame_id = self.stream.submit(self.images[frame % len(self.images)])
            if frame_id is not None:
                self.submitted_at[frame_id] = loop.time()
            frame += 1
            tick += 1 / self.fps


def counts(cameras: Sequence[Camera]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for camera in cameras:
        for name in ("submitted", "sent", "answered", "busy", "failed", "lost"):
            totals[name] = totals.get(name, 0) + getattr(camera.stream.stats, name)
    return totals


Scrape = Callable[[], dict[str, float]]


async def level(
    mode: str, target: str, scrape: Scrape, images: list[bytes], streams: int, fps: float, warmup: float, seconds: float
) -> Level:
    """``streams`` cameras for ``warmup`` + ``seconds``; only the last ``seconds`` count."""
    loop = asyncio.get_running_loop()
    cameras = [Camera(target, images, fps, index) for index in range(streams)]
    for camera in cameras:
        await camera.stream.start()
    begin = loop.time() + warmup
    end = begin + seconds
    feeding = [asyncio.create_task(camera.run(end)) for camera in cameras]
    await asyncio.sleep(max(0.0, begin - loop.time()))
    before, cpu_before = counts(cameras), time.process_time()
    server_before = await asyncio.to_thread(scrape)
    await asyncio.gather(*feeding)
    after, cpu_after = counts(cameras), time.process_time()
    server_after = await asyncio.to_thread(scrape)
    load = os.getloadavg()[0]
    # Answers still owed for the window's frames: a queue that grew during it drains now.
    await asyncio.gather(*(camera.stream.close(drain=True, drain_timeout=DRAIN_SECONDS) for camera in cameras))
    result = Level(mode, streams, fps, seconds, load_average=load)
    result.server_refused = server_after["refused"] - server_before["refused"]
    result.limit, result.frame_ms = server_after["limit"], ms(server_after["frame_seconds"])
    result.client_cpu = cpu_after - cpu_before
    result.detector_cpu = server_after["cpu"] - server_before["cpu"]
    result.offered = after["submitted"] - before["submitted"]
    result.sent = after["sent"] - before["sent"]
    result.refused = after["busy"] - before["busy"]
    result.failed = after["failed"] - before["failed"]
    for camera in cameras:
        window = {i for i, t in camera.submitted_at.items() if begin <= t < end}
        for frame_id, outcome in camera.results:
            if frame_id not in window:
                continue
            if outcome.ok and outcome.response is not None:
                result.accepted += 1
                result.latencies.append(outcome.latency)
                timing = outcome.response.timing
                parts = {stage: getattr(timing, stage).ToNanoseconds() / 1e9 for stage in STAGES}
                result.inside.append(sum(parts.values()))
                for stage, seconds in parts.items():
                    result.stages.setdefault(stage, []).append(seconds)
            elif outcome.lost:
                result.unanswered += 1
    return result


# --------------------------------------------------------------------------- the detector process


@contextlib.contextmanager
def detector_process(folder: Path, workdir: Path, env: dict[str, str]) -> Iterator[tuple[str, Scrape]]:
    """``visionloop serve detector`` serving ``folder``; yields its address and a reader of its
    admission metrics."""
    workdir.mkdir(parents=True, exist_ok=True)
    # info: successful calls log at debug, so only the service's own events are written
    settings = {"DETECTOR_MODEL_PATHS": f"{MODEL_NAME}={folder}", "VISIONLOOP_LOG_LEVEL": "info", **env}
    with serve("detector", workdir, settings) as service:
        service.wait_for("model serving", timeout=120)
        target = f"127.0.0.1:{service.ports()['detector']}"
        metrics = f"http://127.0.0.1:{service.metrics_port()}/metrics"

        def admission() -> dict[str, float]:
            """The detector's own admission metrics: refused frames so far, the bound and time per frame now."""
            with urllib.request.urlopen(metrics, timeout=10) as response:
                text = response.read().decode()
            wanted = {
                "visionloop_detector_refused_frames_total": "refused",
                "visionloop_detector_admission_limit_frames": "limit",
                "visionloop_detector_frame_service_seconds": "frame_seconds",
                "process_cpu_seconds_total": "cpu",
            }
            found = {"refused": 0.0, "limit": 0.0, "frame_seconds": 0.0, "cpu": 0.0}
            for family in text_string_to_metric_families(text):
                for sample in family.samples:
                    if sample.name in wanted and sample.labels.get("model", MODEL_NAME) == MODEL_NAME:
                        found[wanted[sample.name]] = sample.value
            return found

        yield target, admission


async def warm(target: str, images: list[bytes]) -> None:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = detector_service_pb2_grpc.DetectorServiceStub(channel)
        for data in images[:10]:
            await stub.Detect(pb.DetectRequest(image=image_pb2.Image(encoded=data)), timeout=60)


# --------------------------------------------------------------------------- run


def table(report: dict[str, Any], levels: list[Level]) -> str:
    def number(value: float | None, digits: int = 1) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    raw = report["raw"]
    fewest = min(lv.streams for lv in levels)
    lines = [
        "Raw backend (ONNX Runtime session, JPEG -> decode+letterbox+session), before / after the detector runs:",
        "  batch 1 p50 / p99: "
        + " / ".join(f"{r['p50_ms']:.1f} / {r['p99_ms']:.1f} ms" for r in raw)
        + "; batch 8: "
        + " / ".join(f"{r['images_per_s']:.0f}" for r in raw)
        + " images/s",
        f"Cameras at {report['fps']:.2f} fps each ({fewest} cameras offer "
        f"{report['load_share']:.2g}x the raw batch-8 rate)",
        "",
        f"{'detector':<10} {'streams':>7} {'offered/s':>9} {'unsent':>6} {'accepted/s':>10} {'x raw':>6} "
        f"{'refused':>8} {'p50 ms':>7} {'p99 ms':>8} {f'p99/p50@{fewest}':>9} {'in det. p99':>11} "
        f"{'bound':>5} {'ms/frame':>8} {'CPU det/cli':>11} {'lost':>5} {'load':>5}",
    ]
    capacity = statistics.mean(r["images_per_s"] for r in raw)
    base = {mode: next((lv.p50_ms for lv in levels if lv.mode == mode), None) for mode in ("admission", "open")}
    for lv in levels:
        p50_first = base[lv.mode]
        ratio = lv.p99_ms / p50_first if lv.p99_ms is not None and p50_first else None
        lines.append(
            f"{lv.mode:<10} {lv.streams:>7} {lv.offered / lv.seconds:>9.1f} {lv.unsent_share:>6.0%} "
            f"{lv.accepted / lv.seconds:>10.1f} "
            f"{lv.accepted / lv.seconds / capacity:>6.2f} {lv.refused_share:>7.0%} {number(lv.p50_ms):>7} "
            f"{number(lv.p99_ms):>8} {number(ratio, 2):>9} {number(lv.inside_p99_ms):>11} {lv.limit:>5.0f} "
            f"{lv.frame_ms:>8.1f} {lv.detector_cpu / lv.seconds:>5.2f}/{lv.client_cpu / lv.seconds:<5.2f} "
            f"{lv.unanswered:>5} {lv.load_average:>5.1f}"
        )
    verdict = report.get("verdict")
    if verdict:
        lines += ["", verdict]
    return "\n".join(lines)


def judge(levels: list[Level]) -> str:
    ours = [lv for lv in levels if lv.mode == "admission"]
    fewest, most = ours[0], ours[-1]
    if fewest.p50_ms is None or most.p99_ms is None:
        return "no accepted frames to judge"
    bound = LATENCY_TARGET * fewest.p50_ms
    met = most.p99_ms <= bound
    return (
        f"accepted p99 at {most.streams} streams {most.p99_ms:.1f} ms "
        f"{'<=' if met else '>'} {LATENCY_TARGET:g} x p50 at {fewest.streams} streams = {bound:.1f} ms: "
        f"{'met' if met else 'MISSED'}; {most.refused_share:.0%} of sent frames refused with RESOURCE_EXHAUSTED"
    )


async def run(args: argparse.Namespace) -> dict[str, Any]:
    report: dict[str, Any] = {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_average_at_start": os.getloadavg(),
    }
    with tempfile.TemporaryDirectory(prefix="visionloop-admission-bench-") as tmp:
        workdir = Path(tmp)
        images = make_images(args.images)
        folder, description = model_folder(args.model, workdir, images)
        info, weights = read_model_folder(folder)
        report["model"] = description
        session = await asyncio.to_thread(RawSession, weights, info, images, prepare(images, info.input).tensors)
        raw = [await asyncio.to_thread(raw_backend, session, args.requests)]
        fps = args.fps or args.load * raw[0].images_per_s / min(args.streams)
        report |= {"settings": dict(args.set), "fps": fps, "load_share": fps * min(args.streams) / raw[0].images_per_s}

        levels: list[Level] = []
        ours = dict(args.set)
        modes = [("admission", ours)] + ([("open", ours | OPEN)] if args.open else [])
        for mode, env in modes:
            with detector_process(folder, workdir / mode, env) as (target, scrape):
                await warm(target, images)
                for streams in args.streams:
                    measured = await level(mode, target, scrape, images, streams, fps, args.warmup, args.seconds)
                    check(measured.failed == 0, f"{mode} x{streams}: {measured.failed} frames failed")
                    # Opened up, a level's frames may all still wait when the drain gives up: no check.
                    check(mode == "open" or measured.accepted > 0, f"{mode} x{streams}: no frame accepted")
                    levels.append(measured)
                    print(
                        f"  {mode} x{streams}: p50 {measured.p50_ms} ms, p99 {measured.p99_ms} ms, "
                        f"refused {measured.refused_share:.0%}, bound {measured.limit:.0f} frames at "
                        f"{measured.frame_ms:.1f} ms per frame",
                        file=sys.stderr,
                    )
        raw.append(await asyncio.to_thread(raw_backend, session, args.requests))
    report["raw"] = [asdict(r) for r in raw]
    report["verdict"] = judge(levels)
    report["levels"] = [lv.summary() for lv in levels]
    report["table"] = table(report, levels)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="reference", help="as detector_benchmark's --model (default reference)")
    parser.add_argument("--streams", default="8,32,128", help="camera counts, comma-separated (default 8,32,128)")
    parser.add_argument("--seconds", type=float, default=15.0, help="measured seconds per level (default 15)")
    parser.add_argument("--warmup", type=float, default=3.0, help="unmeasured seconds before each level (default 3)")
    parser.add_argument(
        "--load", type=float, default=0.5, help="what the fewest cameras offer, in raw batch-8 rates (default 0.5)"
    )
    parser.add_argument("--fps", type=float, default=0.0, help="frames per second per camera (default: from --load)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        type=lambda item: tuple(item.split("=", 1)),
        help="a detector setting, e.g. DETECTOR_QUEUE_BUDGET_MS=30 (repeatable; default: the detector's defaults)",
    )
    parser.add_argument("--images", type=int, default=32, help="distinct JPEGs, cycled (default 32)")
    parser.add_argument(
        "--requests", type=int, default=160, help="raw backend runs per measurement and round (default 160)"
    )
    parser.add_argument(
        "--open", action="store_true", help="also run the levels against a detector with admission opened up"
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the numbers as JSON")
    args = parser.parse_args(argv)
    try:
        args.streams = sorted(int(n) for n in args.streams.split(","))
    except ValueError:
        parser.error("--streams takes camera counts, e.g. 8,32,128")
    if any(len(item) != 2 for item in args.set):
        parser.error("--set takes NAME=VALUE, e.g. DETECTOR_QUEUE_BUDGET_MS=30")
    if min(args.streams) < 1 or args.seconds <= 0 or args.load <= 0 or args.fps < 0:
        parser.error("--streams, --seconds and --load must be positive")
    configure_logging(level="warning", stream=sys.stderr)

    started = time.perf_counter()
    report = asyncio.run(run(args))
    report["seconds"] = time.perf_counter() - started
    load = report["load_average_at_start"]
    print(
        f"\nVisionLoop admission benchmark: {report['model']}, {report['cpus']} CPUs, Python {report['python']}, "
        f"load average at start {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}\n"
    )
    print(report.pop("table"))
    print(f"\ntotal {report['seconds']:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
