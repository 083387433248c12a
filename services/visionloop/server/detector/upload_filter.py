"""Active-learning upload filter: which detected frames go to the hub for annotation, and why.

After every detection the detector calls ``UploadFilter.decide``; a non-empty list of reasons means
"queue the frame", and the reasons become its image tags. Everything is kept per camera id:

- ``AUTO_UPLOAD_DISABLED``: never. ``AUTO_UPLOAD_ALL``: always, reason ``all``.
- ``AUTO_UPLOAD_FILTERED`` (and ``UNSPECIFIED``):
  ``uncertain`` (a confidence inside [MIN_UNCERTAIN_THRESHOLD, MAX_UNCERTAIN_THRESHOLD]),
  ``segmentation`` (any segmentation), ``too_many_detections`` (more than UPLOAD_MAX_DETECTIONS),
  ``close_to_threshold`` (a confidence up to UPLOAD_CLOSE_TO_THRESHOLD_MARGIN below the band) and
  ``random`` (probability UPLOAD_RANDOM_PROBABILITY, off by default so that ``filtered`` behaves as
  users know it unless sampling is asked for).
  Observations behind ``uncertain``, ``segmentation`` and ``close_to_threshold`` are remembered when
  uploaded; a similar one from the same camera within UPLOAD_SIMILARITY_MEMORY_SECONDS does not
  select the frame again. The two sampling reasons share a per-camera budget
  (UPLOAD_SAMPLE_MAX_PER_MINUTE / _PER_HOUR).
- Every upload, ``all`` included, counts against UPLOAD_MAX_PER_MINUTE / UPLOAD_MAX_PER_HOUR per
  camera; a frame over the limit is not uploaded.

Pure logic: time (monotonic seconds) and randomness are passed in, so decisions are reproducible.
Not thread-safe; the detector calls it from its event loop.
"""

from __future__ import annotations

import math
import random
import struct
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import Enum

from prometheus_client import Counter

from visionloop.common.v1 import detection_pb2, geometry_pb2
from visionloop.detector.v1 import detector_service_pb2
from visionloop.lib.geometry import box_iou
from visionloop.server.detector.config import DetectorSettings

REASON_ALL = "all"
REASON_UNCERTAIN = "uncertain"
REASON_SEGMENTATION = "segmentation"
REASON_TOO_MANY = "too_many_detections"
REASON_CLOSE = "close_to_threshold"
REASON_RANDOM = "random"

SKIP_SIMILAR = "similar"
SKIP_RATE_LIMITED = "rate_limited"
SKIP_SAMPLE_LIMITED = "sample_rate_limited"

UPLOADS = Counter(
    "visionloop_detector_uploads",
    "Frames the upload filter selected, once per reason (a frame with two reasons counts twice).",
    ["reason"],
)
UPLOADS_SKIPPED = Counter(
    "visionloop_detector_upload_skipped",
    "Frames the upload filter would have selected but did not, by why not.",
    ["reason"],
)

_MINUTE = 60.0
_HOUR = 3600.0
# Bounds memory per camera even with a long memory time; only novel observations are stored.
_MAX_MEMORY_PER_CAMERA = 1000
# How often (in `now` seconds) state of cameras that went quiet is dropped.
_SWEEP_INTERVAL = 60.0

_Rect = tuple[float, float, float, float]  # x, y, width, height


def _f32(value: float) -> float:
    """Rounds to float32: confidences arrive as proto floats, so 0.6 must compare equal to 0.6."""
    return float(struct.unpack("f", struct.pack("f", value))[0])


@dataclass(frozen=True)
class FilterSettings:
    """Upload filter settings; defaults match DetectorSettings."""

    min_uncertain: float = 0.3
    max_uncertain: float = 0.6
    similarity_memory_seconds: float = 60.0
    similarity_iou: float = 0.5
    point_radius_px: float = 20.0
    max_detections: int = 50
    random_probability: float = 0.0
    close_to_threshold_margin: float = 0.05
    sample_max_per_minute: int = 1
    sample_max_per_hour: int = 10
    max_per_minute: int = 30
    max_per_hour: int = 600

    def __post_init__(self) -> None:
        if not 0 <= self.min_uncertain <= self.max_uncertain <= 1:
            raise ValueError("uncertain band must satisfy 0 <= min_uncertain <= max_uncertain <= 1")
        for name in ("random_probability", "close_to_threshold_margin", "similarity_iou"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1]")
        for name in ("similarity_memory_seconds", "point_radius_px", "sample_max_per_minute", "sample_max_per_hour"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        for name in ("max_detections", "max_per_minute", "max_per_hour"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")

    @classmethod
    def from_settings(cls, settings: DetectorSettings) -> FilterSettings:
        return cls(
            min_uncertain=settings.min_uncertain_threshold,
            max_uncertain=settings.max_uncertain_threshold,
            similarity_memory_seconds=settings.upload_similarity_memory_seconds,
            similarity_iou=settings.upload_similarity_iou,
            point_radius_px=settings.upload_point_radius_px,
            max_detections=settings.upload_max_detections,
            random_probability=settings.upload_random_probability,
            close_to_threshold_margin=settings.upload_close_to_threshold_margin,
            sample_max_per_minute=settings.upload_sample_max_per_minute,
            sample_max_per_hour=settings.upload_sample_max_per_hour,
            max_per_minute=settings.upload_max_per_minute,
            max_per_hour=settings.upload_max_per_hour,
        )


class _Kind(Enum):
    BOX = "box"
    POINT = "point"
    SEGMENTATION = "segmentation"
    CLASSIFICATION = "classification"


@dataclass(frozen=True)
class _Observation:
    """What the similarity memory compares: kind, category and where (rect or point)."""

    kind: _Kind
    category: str
    confidence: float
    rect: _Rect | None = None
    point: tuple[float, float] | None = None


@dataclass
class _Remembered:
    observation: _Observation
    time: float


class _Window:
    """Sliding per-minute and per-hour counts of events."""

    def __init__(self, per_minute: int, per_hour: int) -> None:
        self._per_minute = per_minute
        self._per_hour = per_hour
        self._times: deque[float] = deque()

    def prune(self, now: float) -> None:
        while self._times and now - self._times[0] >= _HOUR:
            self._times.popleft()

    def allows(self, now: float) -> bool:
        self.prune(now)
        if len(self._times) >= self._per_hour:
            return False
        last_minute = 0
        for t in reversed(self._times):  # newest first; stops after at most per_minute + 1 items
            if now - t >= _MINUTE or last_minute >= self._per_minute:
                break
            last_minute += 1
        return last_minute < self._per_minute

    def record(self, now: float) -> None:
        self._times.append(now)

    def __bool__(self) -> bool:
        return bool(self._times)


@dataclass
class _Camera:
    uploads: _Window
    samples: _Window
    memory: deque[_Remembered] = field(default_factory=lambda: deque(maxlen=_MAX_MEMORY_PER_CAMERA))

    def forget(self, now: float, memory_seconds: float) -> None:
        while self.memory and now - self.memory[0].time >= memory_seconds:
            self.memory.popleft()
        self.uploads.prune(now)
        self.samples.prune(now)

    def idle(self) -> bool:
        return not (self.memory or self.uploads or self.samples)


def _category(category_id: str, category_name: str) -> str:
    return category_id or category_name


def _box_rect(box: geometry_pb2.Box) -> _Rect:
    return (box.x, box.y, box.width, box.height)


def _segmentation_rect(seg: detection_pb2.SegmentationDetection) -> _Rect:
    # The polygon is authoritative; bounding_box is only a convenience copy.
    if seg.polygon.points:
        xs = [p.x for p in seg.polygon.points]
        ys = [p.y for p in seg.polygon.points]
        return (min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys))
    return _box_rect(seg.bounding_box)


def _observations(detections: detection_pb2.Detections, low: float, high: float) -> Iterator[_Observation]:
    """The observations the filter can act on: every segmentation, and the others with a confidence
    in [low, high]. The confidence is checked before anything is built: a frame typically carries
    a hundred confident boxes, and building an observation for each would cost 0.5 ms a frame."""
    for b in detections.boxes:
        if low <= b.confidence <= high:
            category = _category(b.category_id, b.category_name)
            yield _Observation(_Kind.BOX, category, b.confidence, rect=_box_rect(b.box))
    for p in detections.points:
        if low <= p.confidence <= high:
            category = _category(p.category_id, p.category_name)
            yield _Observation(_Kind.POINT, category, p.confidence, point=(p.point.x, p.point.y))
    for s in detections.segmentations:
        category = _category(s.category_id, s.category_name)
        yield _Observation(_Kind.SEGMENTATION, category, s.confidence, rect=_segmentation_rect(s))
    for c in detections.classifications:
        if low <= c.confidence <= high:
            yield _Observation(_Kind.CLASSIFICATION, _category(c.category_id, c.category_name), c.confidence)


def _count(detections: detection_pb2.Detections) -> int:
    return (
        len(detections.boxes) + len(detections.points) + len(detections.segmentations) + len(detections.classifications)
    )


class UploadFilter:
    """Decides per frame whether to upload it and with which reasons (see the module docstring)."""

    def __init__(self, settings: FilterSettings, rng: random.Random | None = None) -> None:
        self._settings = settings
        self._rng = rng if rng is not None else random.Random()
        # Thresholds in float32 so that a confidence of exactly MAX_UNCERTAIN_THRESHOLD is inside.
        self._band_low = _f32(settings.min_uncertain)
        self._band_high = _f32(settings.max_uncertain)
        self._close_low = _f32(max(settings.min_uncertain - settings.close_to_threshold_margin, 0.0))
        self._cameras: dict[str, _Camera] = {}
        self._last_sweep: float | None = None

    @property
    def settings(self) -> FilterSettings:
        return self._settings

    def decide(self, camera_id: str, detections: detection_pb2.Detections, mode: int, now: float) -> list[str]:
        """Reasons to upload this frame (empty: don't). ``now`` is monotonic seconds.

        ``mode`` is a ``detector_service_pb2.AutoUpload`` value; UNSPECIFIED means FILTERED.
        Raises ValueError for an unknown mode (the service validates requests before detecting).
        """
        if mode == detector_service_pb2.AUTO_UPLOAD_DISABLED:
            return []
        if mode not in (
            detector_service_pb2.AUTO_UPLOAD_ALL,
            detector_service_pb2.AUTO_UPLOAD_FILTERED,
            detector_service_pb2.AUTO_UPLOAD_UNSPECIFIED,
        ):
            raise ValueError(f"unknown autoupload mode {mode}")
        self._sweep(now)
        camera = self._camera(camera_id, now)
        if mode == detector_service_pb2.AUTO_UPLOAD_ALL:
            return self._admit(camera, [REASON_ALL], (), now)
        return self._filtered(camera, detections, now)

    def _filtered(self, camera: _Camera, detections: detection_pb2.Detections, now: float) -> list[str]:
        reasons: list[str] = []
        novel: list[_Observation] = []
        suppressed = False
        # Uncertain [band_low, band_high] and close to it [close_low, band_low): nothing else is used.
        observations = list(_observations(detections, self._close_low, self._band_high))

        for reason, candidates in (
            (REASON_UNCERTAIN, [o for o in observations if self._uncertain(o)]),
            (REASON_SEGMENTATION, [o for o in observations if o.kind is _Kind.SEGMENTATION]),
        ):
            fresh = self._novel(camera, candidates)
            suppressed |= len(fresh) < len(candidates)
            if fresh:
                reasons.append(reason)
                novel.extend(fresh)

        if _count(detections) > self._settings.max_detections:
            reasons.append(REASON_TOO_MANY)

        sampled, close_novel, sample_suppressed = self._sample(camera, observations)
        suppressed |= sample_suppressed
        if sampled and not camera.samples.allows(now):
            sampled, close_novel = [], []
            if not reasons:
                UPLOADS_SKIPPED.labels(SKIP_SAMPLE_LIMITED).inc()
                return []
        if sampled:
            reasons.extend(sampled)
            novel.extend(close_novel)

        if not reasons:
            if suppressed:
                UPLOADS_SKIPPED.labels(SKIP_SIMILAR).inc()
            return []
        admitted = self._admit(camera, reasons, novel, now)
        if admitted and sampled:
            camera.samples.record(now)
        return admitted

    def _sample(self, camera: _Camera, observations: list[_Observation]) -> tuple[list[str], list[_Observation], bool]:
        """Sampling reasons (before the sampling budget), the novel close observations, and
        whether a close observation was suppressed as similar."""
        reasons: list[str] = []
        close = [o for o in observations if self._close_to_threshold(o)]
        close_novel = self._novel(camera, close)
        if close_novel:
            reasons.append(REASON_CLOSE)
        # Draw only when enabled so that a disabled sampler leaves an injected rng untouched.
        p = self._settings.random_probability
        if p > 0 and self._rng.random() < p:
            reasons.append(REASON_RANDOM)
        return reasons, close_novel, len(close_novel) < len(close)

    def _admit(self, camera: _Camera, reasons: list[str], novel: Iterable[_Observation], now: float) -> list[str]:
        """Applies the per-camera upload limit; remembers what an upload carried."""
        if not camera.uploads.allows(now):
            UPLOADS_SKIPPED.labels(SKIP_RATE_LIMITED).inc()
            return []
        camera.uploads.record(now)
        if self._settings.similarity_memory_seconds > 0:
            # dict.fromkeys: an uncertain segmentation is novel for two reasons but stored once.
            camera.memory.extend(_Remembered(o, now) for o in dict.fromkeys(novel))
        for reason in reasons:
            UPLOADS.labels(reason).inc()
        return reasons

    def _uncertain(self, o: _Observation) -> bool:
        return self._band_low <= o.confidence <= self._band_high

    def _close_to_threshold(self, o: _Observation) -> bool:
        return self._settings.close_to_threshold_margin > 0 and self._close_low <= o.confidence < self._band_low

    def _novel(self, camera: _Camera, candidates: list[_Observation]) -> list[_Observation]:
        return [o for o in candidates if not any(self._similar(o, r.observation) for r in camera.memory)]

    def _similar(self, a: _Observation, b: _Observation) -> bool:
        if a.kind is not b.kind or a.category != b.category:
            return False
        if a.rect is not None and b.rect is not None:
            return box_iou(a.rect, b.rect) >= self._settings.similarity_iou
        if a.point is not None and b.point is not None:
            return math.dist(a.point, b.point) <= self._settings.point_radius_px
        return True  # classifications: the category is the whole observation

    def _camera(self, camera_id: str, now: float) -> _Camera:
        camera = self._cameras.get(camera_id)
        if camera is None:
            s = self._settings
            camera = _Camera(
                _Window(s.max_per_minute, s.max_per_hour), _Window(s.sample_max_per_minute, s.sample_max_per_hour)
            )
            self._cameras[camera_id] = camera
        camera.forget(now, self._settings.similarity_memory_seconds)
        return camera

    def _sweep(self, now: float) -> None:
        """Drops state of cameras that went quiet, so arbitrary camera ids cannot grow memory."""
        if self._last_sweep is not None and now - self._last_sweep < _SWEEP_INTERVAL:
            return
        self._last_sweep = now
        for camera_id, camera in list(self._cameras.items()):
            camera.forget(now, self._settings.similarity_memory_seconds)
            if camera.idle():
                del self._cameras[camera_id]

    def camera_count(self) -> int:
        """Cameras with state kept (for tests and diagnostics)."""
        return len(self._cameras)
