"""Admission control: a model holds at most a latency budget's worth of frames and refuses the rest.

Under load a detector that queues every frame answers late: with 128 cameras each frame waits
behind hundreds of others and a robot gets a stale answer seconds later. Instead each model admits
a frame only while the frames it already holds take less than a queueing delay to get through;
beyond that the frame is refused at once with RESOURCE_EXHAUSTED (a fast "busy" that the robot
client counts as a dropped frame), so the latency of admitted frames stays bounded however many
cameras send.

Which delay depends on whether the queue is a good one or a bad one (CoDel's distinction, Nichols
and Jacobson; Facebook's RPC servers time their queues out the same way). A queue that drains
within ``interval`` absorbs a burst: cameras whose frames happen to arrive together at light load
are all taken, up to ``budget`` (DETECTOR_QUEUE_BUDGET_MS). A model that has held frames without a
break for ``interval`` (DETECTOR_QUEUE_INTERVAL_MS) is overloaded: the queue standing in front of it
only adds delay, so it admits only ``target``'s worth (DETECTOR_QUEUE_TARGET_MS, half the budget
unless set) until it holds nothing and has refused nothing for an interval. Holding nothing alone
is no relief: under overload a small bound empties with every batch call, between two refusals.
One budget cannot do both: a short one refuses an idle-ish detector's bursts, a long one lets every
accepted frame under overload wait the whole budget.

How long the held frames take comes from measurement, not configuration: the model's time per
frame is its busy time (some frame held) over the frames it answered in that time, smoothed over
recent samples. At light load that is a frame's own latency; under load it is the inverse of the
throughput it reaches, batching, decoding and every other stage included. The bound in frames is
``1 + delay / time per frame`` (the frames ahead of a new one may take the delay), capped at
``max_frames`` (``DETECTOR_MAX_QUEUED_BATCHES`` batches, the hard cap TF-Serving's
``max_enqueued_batches`` sets) whatever the measurement says; before the first measurement the cap
alone bounds it. Triton's queue policy (``max_queue_size``, a timeout with action ``REJECT``) and
BentoML's ``mb_max_latency`` (a latency goal against execution time estimated from history) are
the same idea.

A model that holds nothing admits any one request, even a ``DetectBatch`` larger than the bound:
an idle detector never refuses.
"""

from __future__ import annotations

import math
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
    "Most frames a model admits at once now: 1 + DETECTOR_QUEUE_BUDGET_MS (DETECTOR_QUEUE_TARGET_MS while "
    "overloaded) / its measured time per frame, capped.",
    ["model"],
)
OVERLOADED = Gauge(
    "visionloop_detector_admission_overloaded",
    "1 while a model is overloaded: it has held frames without a break for DETECTOR_QUEUE_INTERVAL_MS, so it "
    "admits only DETECTOR_QUEUE_TARGET_MS' worth until it next holds nothing; 0 otherwise.",
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
    DETECTOR_MAX_QUEUED_BATCHES, DETECTOR_QUEUE_TARGET_MS, DETECTOR_QUEUE_INTERVAL_MS)."""

    budget: float = 0.05  # seconds
    max_queued_batches: int = 4
    max_batch_size: int = 16  # DETECTOR_MAX_BATCH_SIZE: a batch of one model (e.g. a static export) takes fewer
    target: float | None = None  # seconds, at most the budget; None: half the budget
    interval: float = 0.1  # seconds

    def admission(self, model: str, max_batch: int) -> Admission:
        return Admission(
            model,
            self.budget,
            self.max_queued_batches * max(max_batch, self.max_batch_size),
            target=self.target,
            interval=self.interval,
        )


DEFAULT_POLICY = AdmissionPolicy()


class Admission:
    """Which frames one served model takes: see the module's docstring. Not thread-safe: the event
    loop alone admits and releases (the gauges only read)."""

    def __init__(
        self,
        model: str,
        budget: float,
        max_frames: int,
        target: float | None = None,
        interval: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if budget <= 0 or max_frames < 1 or interval <= 0 or (target is not None and target <= 0):
            raise ValueError("budget, max_frames, target and interval must be positive")
        self.model = model
        self.budget = budget
        self.target = budget / 2 if target is None else min(target, budget)  # one mode at the budget
        self.interval = interval
        self.max_frames = max_frames
        self._clock = clock
        self.held = 0
        self.frame_seconds: float | None = None  # measured time per frame, None until the first sample
        self._mark = clock()  # when busy time was last added up
        self._busy = 0.0  # busy seconds since the last sample
        self._answered = 0  # frames answered since the last sample
        self._busy_since = self._mark  # when the model last went from holding nothing to holding frames
        self._refused_at = -math.inf  # when it last refused a frame
        self._overloaded = False  # as of the last admit or release
        self._refused = REFUSED.labels(model)
        self._held = HELD.labels(model)
        # Read when scraped: an overload that ended with the last frame shows as ended without a next one.
        LIMIT.labels(model).set_function(lambda: self.limit)
        OVERLOADED.labels(model).set_function(lambda: int(self.overloaded))

    def _overloaded_at(self, now: float) -> bool:
        if self._overloaded:
            # Until it holds nothing and has refused nothing for an interval: an overloaded model
            # refuses all the time and empties for a moment between two batches, which is no relief.
            return self.held > 0 or now - self._refused_at < self.interval
        return self.held > 0 and now - self._busy_since >= self.interval

    @property
    def overloaded(self) -> bool:
        """Whether the model admits only ``target``'s worth of frames now, not ``budget``'s."""
        return self._overloaded_at(self._clock())

    @property
    def limit(self) -> int:
        """Most frames held at once now (a request arriving at an idle model is taken whatever its size)."""
        return self._limit_for(self.overloaded)

    def _limit_for(self, overloaded: bool) -> int:
        if self.frame_seconds is None:  # not measured yet: only the cap bounds it
            return self.max_frames
        delay = self.target if overloaded else self.budget
        return max(1, min(self.max_frames, 1 + int(delay / self.frame_seconds)))

    def _account(self) -> float:
        """Adds up busy time and the mode to now; returns now."""
        now = self._clock()
        if self.held:
            self._busy += now - self._mark
        self._mark = now
        self._overloaded = self._overloaded_at(now)
        return now

    def admit(self, frames: int = 1) -> None:
        """Take ``frames`` or raise ResourceExhausted at once; each admitted frame needs a ``release``."""
        now = self._account()
        if self.held and self.held + frames > self._limit_for(self._overloaded):
            self._refused_at = now
            self._refused.inc(frames)
            raise ResourceExhausted(self._refusal())
        if not self.held:
            self._busy_since = now
        self.held += frames
        self._held.set(self.held)

    def _refusal(self) -> str:
        """Why a frame is refused now, naming the setting that bounds it."""
        held = f"detector busy: model {self.model!r} already holds {self.held} frames"
        if self._limit_for(self._overloaded) == self.max_frames:
            why = (
                f"its most whatever its speed, {self.max_frames} frames (DETECTOR_MAX_QUEUED_BATCHES batches of "
                "DETECTOR_MAX_BATCH_SIZE)"
            )
        elif self._overloaded:
            why = (
                f"what it gets through in {self.target * 1000:g} ms (DETECTOR_QUEUE_TARGET_MS): it is overloaded, "
                f"busy without a break for over {self.interval * 1000:g} ms (DETECTOR_QUEUE_INTERVAL_MS), so the "
                f"{self.budget * 1000:g} ms that absorb a burst (DETECTOR_QUEUE_BUDGET_MS) do not apply"
            )
        else:
            why = f"what it gets through in {self.budget * 1000:g} ms (DETECTOR_QUEUE_BUDGET_MS)"
        return f"{held}, {why}; the frame was not queued. Send the next frame, or retry after a backoff"

    def release(self, frames: int = 1, answered: bool = True) -> None:
        """``frames`` left the model: ``answered`` with detections (they count as work done), or failed."""
        now = self._account()
        self.held -= frames
        self._held.set(self.held)
        self._overloaded = self._overloaded_at(now)
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
