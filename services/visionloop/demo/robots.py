"""Simulated robots: each a camera streaming JPEG frames to the detector with the robot client library.

A robot submits its frames at camera rate to a ``SyncFrameStream`` (``DetectStream`` underneath)
and lets the detector's upload filter decide what goes to the hub (``autoupload="filtered"``);
while there is no model yet, it uploads its frames with ``Upload`` instead. Robots run on threads
of their own, as separate machines would.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from visionloop.client.detector import DetectorClient
from visionloop.client.streaming import FrameResult, SyncFrameStream
from visionloop.demo.scenes import Frame

DRAIN_SECONDS = 60.0  # answers still owed once the last frame went out
Tick = Callable[[int], object]  # frames done since the last call (progress; a tqdm bar's update returns a flag)


def camera_id(robot: int) -> str:
    return f"robot-{robot}"


@dataclass
class StreamReport:
    """What the robots saw in one round, added up over robots."""

    submitted: int = 0
    answered: int = 0
    uploaded: int = 0  # frames the detector queued for the hub
    failed: int = 0  # the detector answered with an error
    missed: int = 0  # dropped before sending, refused by a busy detector, or lost with a broken stream
    latencies: list[float] = field(default_factory=list)  # seconds from submit to answer
    versions: set[str] = field(default_factory=set)  # model versions that answered
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, result: FrameResult) -> None:
        with self._lock:
            if result.response is None:
                if result.lost:
                    self.missed += 1
                else:
                    self.failed += 1
                return
            self.answered += 1
            self.latencies.append(result.latency)
            self.uploaded += int(result.response.uploaded)
            self.versions.add(result.response.model_version)

    def add_stream(self, submitted: int, dropped: int) -> None:
        """A finished stream's own counts: frames submitted, and dropped (before they were sent, or by
        a busy detector: neither reaches ``add``)."""
        with self._lock:
            self.submitted += submitted
            self.missed += dropped


def _drive(target: str, robot: int, frames: Sequence[Frame], fps: float, report: StreamReport, tick: Tick) -> None:
    def answered(result: FrameResult) -> None:
        report.add(result)
        tick(1)

    stream = SyncFrameStream(target, on_result=answered, camera_id=camera_id(robot), autoupload="filtered")
    try:
        start = time.monotonic()
        for index, frame in enumerate(frames):
            time.sleep(max(0.0, start + index / fps - time.monotonic()))  # the camera's clock, not the link's
            stream.submit(frame.data)
    finally:
        stream.close(drain=True, drain_timeout=DRAIN_SECONDS)
    dropped = stream.stats.dropped + stream.stats.busy
    report.add_stream(stream.stats.submitted, dropped)
    tick(dropped)


def stream(target: str, frames: Sequence[Sequence[Frame]], fps: float, tick: Tick = lambda _: None) -> StreamReport:
    """Robot ``i`` streams ``frames[i]`` at ``fps``, all robots at once; returns when every answer is in."""
    report = StreamReport()
    with ThreadPoolExecutor(len(frames), thread_name_prefix="visionloop-robot") as pool:
        futures = [pool.submit(_drive, target, robot, own, fps, report, tick) for robot, own in enumerate(frames)]
        for future in futures:
            future.result()
    return report


def upload(target: str, frames: Sequence[Sequence[Frame]], tick: Tick = lambda _: None) -> int:
    """Robot ``i`` hands ``frames[i]`` to the detector's outbox with ``Upload``; returns how many were queued."""

    def send(robot: int, own: Sequence[Frame]) -> int:
        queued = 0
        with DetectorClient(target, timeout=30.0, wait_for_ready=True) as client:
            for frame in own:
                client.upload(frame.data, camera_id=camera_id(robot), tags=["bootstrap"])
                queued += 1
                tick(1)
        return queued

    with ThreadPoolExecutor(len(frames), thread_name_prefix="visionloop-robot") as pool:
        return sum(pool.map(send, range(len(frames)), frames))
