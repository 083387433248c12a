"""Admission control: a model holds at most a latency budget's worth of frames and refuses the rest.

Under load a detector that queues every frame answers late: with 128 cameras each frame waits
behind hundreds of others and a robot gets a stale answer seconds later. Instead each model admits
a frame only while the frames it already holds take less than ``budget`` to get through; beyond
that the frame is refused at once with RESOURCE_EXHAUSTED (a fast "busy" that the robot client
counts as a dropped frame), so the latency of admitted frames stays bounded however many cameras
send.

How long the held frames take comes from measurement, not configuration: the model's time per
frame is its busy time (some frame held) over the frames it answered in that time, smoothed over
recent samples. At light load that is a frame's own latency; under load it is the inverse of the
throughput it reaches, batching, decoding and every other stage included. The bound in frames is
``1 + budget / time per frame`` (the frames ahead of a new one may take ``budget``), capped at
``max_frames`` (``DETECTOR_MAX_QUEUED_BATCHES`` batches, the hard cap TF-Serving's
``max_enqueued_batches`` sets) whatever the measurement says; before the first measurement the cap
alone bounds it. Triton's queue policy (``max_queue_size``, a timeout with action ``REJECT``) and
BentoML's ``mb_max_latency`` (a latency goal against execution time estimated from history) are
the same idea.

A model that holds nothing admits any one request, even a ``DetectBatch`` larger than the bound:
an idle detector never refuses.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from prometheus_client import Counter, Gauge

from visionloop.runtime.errors import ResourceExhausted

REFUSED = Counter(
    "visionloop_detector_refused_frames",
    "Frames refused with RESOURCE_EXHAUSTED: their model already held its latency budget's worth of frames.",
    ["model"],
)
HELD = Gauge("visionloop_detector_held_frames", "Frames a model holds: admitted and not yet answered.", ["model"])
LIMIT = Gauge(
    "visionloop_detector_admission_limit_frames",
    "Most frames a model admits at once now: 1 + DETECTOR_QUEUE_BUDGET_MS / its measured time per frame, capped.",
    ["model"],
)
FRAME_SECONDS = Gauge(
    "visionloop_detector_frame_service_seconds",
    "A model's measured time per frame: busy seconds over frames answered (the inverse of its throughput under load).",
    ["model"],
)

SAMPLE_FRAMES = 8  # frames answered per measurement: a batch or so, so one sample is not one frame's luck
SAMPLE_STALL_SECONDS = 1.0  # busy this long without SAMPLE_FRAMES answers (a hung backend) also measures
SMOOTHING = 0.3  # weight of the newest sample: the bound follows a change of load within a few samples


@dataclass(frozen=True)
class AdmissionPolicy:
    """The settings every served model's ``Admission`` is made from (DETECTOR_QUEUE_BUDGET_MS,
    DETECTOR_MAX_QUEUED_BATCHES)."""

    budget: float = 0.05  # seconds
    max_queued_batches: int = 4
    max_batch_size: int = 16  # DETECTOR_MAX_BATCH_SIZE: a batch of one model (e.g. a static export) takes fewer

    def admission(self, model: str, max_batch: int) -> Admission:
        return Admission(model, self.budget, self.max_queued_batches * max(max_batch, self.max_batch_size))


DEFAULT_POLICY = AdmissionPolicy()


class Admission:
    """Which frames one served model takes: see the module's docstring. Not thread-safe: the event
    loop alone admits and releases."""

    def __init__(
        self,
        model: str,
        budget: float,
        max_frames: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if budget <= 0 or max_frames < 1:
            raise ValueError("budget and max_frames must be positive")
        self.model = model
        self.budget = budget
        self.max_frames = max_frames
        self._clock = clock
        self.held = 0
        self.frame_seconds: float | None = None  # measured time per frame, None until the first sample
        self._mark = clock()  # when busy time was last added up
        self._busy = 0.0  # busy seconds since the last sample
        self._answered = 0  # frames answered since the last sample
        self._refused = REFUSED.labels(model)
        self._held = HELD.labels(model)
        self._limit = LIMIT.labels(model)
        self._limit.set(self.limit)

    @property
    def limit(self) -> int:
        """Most frames held at once now (a request arriving at an idle model is taken whatever its size)."""
        if self.frame_seconds is None:  # not measured yet: only the cap bounds it
            return self.max_frames
        return max(1, min(self.max_frames, 1 + int(self.budget / self.frame_seconds)))

    def _account(self) -> None:
        now = self._clock()
        if self.held:
            self._busy += now - self._mark
        self._mark = now

    def admit(self, frames: int = 1) -> None:
        """Take ``frames`` or raise ResourceExhausted at once; each admitted frame needs a ``release``."""
        if self.held and self.held + frames > self.limit:
            self._refused.inc(frames)
            raise ResourceExhausted(
                f"detector busy: model {self.model!r} already holds {self.held} frames, what it gets through in "
                f"{self.budget * 1000:g} ms (DETECTOR_QUEUE_BUDGET_MS); the frame was not queued. Send the next "
                "frame, or retry after a backoff"
            )
        self._account()
        self.held += frames
        self._held.set(self.held)

    def release(self, frames: int = 1, answered: bool = True) -> None:
        """``frames`` left the model: ``answered`` with detections (they count as work done), or failed."""
        self._account()
        self.held -= frames
        self._held.set(self.held)
        if answered:
            self._answered += frames
        if self._answered >= SAMPLE_FRAMES or self._busy >= SAMPLE_STALL_SECONDS:
            self._sample()

    def _sample(self) -> None:
        sample = self._busy / max(1, self._answered)
        previous = self.frame_seconds
        self.frame_seconds = sample if previous is None else previous + SMOOTHING * (sample - previous)
        self._busy, self._answered = 0.0, 0
        FRAME_SECONDS.labels(self.model).set(self.frame_seconds)
        self._limit.set(self.limit)

    @contextmanager
    def hold(self, frames: int = 1) -> Iterator[None]:
        """``admit`` on entry, ``release`` on exit (answered unless the block raised)."""
        self.admit(frames)
        answered = False
        try:
            yield
            answered = True
        finally:
            self.release(frames, answered)
