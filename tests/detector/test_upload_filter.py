"""The detector's active-learning upload filter: which frames go to the hub, and why."""

from __future__ import annotations

import random
from dataclasses import replace

import numpy as np
import pytest
from prometheus_client import REGISTRY

from visionloop.common.v1 import detection_pb2, geometry_pb2
from visionloop.detector.v1 import detector_service_pb2 as ds
from visionloop.runtime.config import load_settings
from visionloop.server.detector.config import DetectorSettings
from visionloop.server.detector.upload_filter import FilterSettings, UploadFilter

FILTERED = ds.AUTO_UPLOAD_FILTERED
CAM = "front"

# Sampling off unless a test turns it on, so each test sees only the rule it is about.
BASE = FilterSettings(close_to_threshold_margin=0.0, random_probability=0.0)


def box(conf: float, x: float = 0, y: float = 0, w: float = 10, h: float = 10, cat: str = "c1"):
    return detection_pb2.BoxDetection(
        category_id=cat, confidence=conf, box=geometry_pb2.Box(x=x, y=y, width=w, height=h)
    )


def point(conf: float, x: float = 0, y: float = 0, cat: str = "c1"):
    return detection_pb2.PointDetection(category_id=cat, confidence=conf, point=geometry_pb2.Point(x=x, y=y))


def seg(conf: float, x: float = 0, y: float = 0, size: float = 10, cat: str = "c1", polygon: bool = True):
    corners = [(x, y), (x + size, y), (x + size, y + size), (x, y + size)]
    detection = detection_pb2.SegmentationDetection(category_id=cat, confidence=conf)
    if polygon:
        detection.polygon.points.extend(geometry_pb2.Point(x=px, y=py) for px, py in corners)
    else:
        detection.bounding_box.CopyFrom(geometry_pb2.Box(x=x, y=y, width=size, height=size))
    return detection


def cls(conf: float, cat: str = "c1"):
    return detection_pb2.ClassificationDetection(category_id=cat, confidence=conf)


def dets(*items) -> detection_pb2.Detections:
    out = detection_pb2.Detections()
    for item in items:
        field = {
            detection_pb2.BoxDetection: out.boxes,
            detection_pb2.PointDetection: out.points,
            detection_pb2.SegmentationDetection: out.segmentations,
            detection_pb2.ClassificationDetection: out.classifications,
        }[type(item)]
        field.append(item)
    return out


def f32_below(x: float) -> float:
    return float(np.nextafter(np.float32(x), np.float32(0)))


def f32_above(x: float) -> float:
    return float(np.nextafter(np.float32(x), np.float32(1)))


def metric(name: str, reason: str) -> float:
    return REGISTRY.get_sample_value(name, {"reason": reason}) or 0.0


class FixedRandom(random.Random):
    """random() returns the given values in turn; counts draws."""

    def __init__(self, *values: float) -> None:
        super().__init__(0)
        self.values = list(values)
        self.draws = 0

    def random(self) -> float:
        self.draws += 1
        return self.values.pop(0) if self.values else 0.999


# --- modes -------------------------------------------------------------------------------------


def test_disabled_never_uploads() -> None:
    f = UploadFilter(BASE)
    assert f.decide(CAM, dets(box(0.4), seg(0.9)), ds.AUTO_UPLOAD_DISABLED, now=0.0) == []


def test_all_uploads_every_frame_with_reason_all() -> None:
    f = UploadFilter(BASE)
    assert f.decide(CAM, dets(), ds.AUTO_UPLOAD_ALL, now=0.0) == ["all"]
    assert f.decide(CAM, dets(box(0.4)), ds.AUTO_UPLOAD_ALL, now=1.0) == ["all"]


def test_unspecified_means_filtered() -> None:
    f = UploadFilter(BASE)
    assert f.decide(CAM, dets(box(0.4)), ds.AUTO_UPLOAD_UNSPECIFIED, now=0.0) == ["uncertain"]
    assert f.decide(CAM, dets(box(0.9)), ds.AUTO_UPLOAD_UNSPECIFIED, now=1.0) == []


def test_unknown_mode_is_rejected() -> None:
    with pytest.raises(ValueError, match="autoupload"):
        UploadFilter(BASE).decide(CAM, dets(), 99, now=0.0)


# --- uncertainty band ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("confidence", "uploaded"),
    [
        (0.3, True),  # exactly MIN_UNCERTAIN_THRESHOLD
        (0.6, True),  # exactly MAX_UNCERTAIN_THRESHOLD (a float32 0.6 is slightly above the double)
        (0.45, True),
        (f32_below(0.3), False),  # the next float32 below the band
        (f32_above(0.6), False),  # the next float32 above the band
        (0.29, False),
        (0.61, False),
    ],
)
def test_uncertainty_band_edges(confidence: float, uploaded: bool) -> None:
    f = UploadFilter(BASE)
    assert f.decide(CAM, dets(box(confidence)), FILTERED, now=0.0) == (["uncertain"] if uploaded else [])


@pytest.mark.parametrize(
    ("detection", "reasons"),
    [
        (box(0.5), ["uncertain"]),
        (point(0.5), ["uncertain"]),
        (cls(0.5), ["uncertain"]),
        (seg(0.5), ["uncertain", "segmentation"]),
    ],
)
def test_band_applies_to_every_kind(detection: object, reasons: list[str]) -> None:
    assert UploadFilter(BASE).decide(CAM, dets(detection), FILTERED, now=0.0) == reasons


def test_confident_and_empty_frames_are_not_uploaded() -> None:
    f = UploadFilter(BASE)
    assert f.decide(CAM, dets(box(0.95), point(0.1), cls(0.8)), FILTERED, now=0.0) == []
    assert f.decide(CAM, dets(), FILTERED, now=1.0) == []


def test_band_comes_from_detector_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIN_UNCERTAIN_THRESHOLD", "0.1")
    monkeypatch.setenv("MAX_UNCERTAIN_THRESHOLD", "0.2")
    monkeypatch.setenv("UPLOAD_SIMILARITY_MEMORY_SECONDS", "5")
    monkeypatch.setenv("UPLOAD_MAX_PER_MINUTE", "7")
    monkeypatch.setenv("UPLOAD_RANDOM_PROBABILITY", "0.25")
    settings = FilterSettings.from_settings(load_settings(DetectorSettings))
    assert (settings.min_uncertain, settings.max_uncertain) == (0.1, 0.2)
    assert settings.similarity_memory_seconds == 5
    assert settings.max_per_minute == 7
    assert settings.random_probability == 0.25
    f = UploadFilter(replace(settings, close_to_threshold_margin=0.0, random_probability=0.0))
    assert f.decide(CAM, dets(box(0.2)), FILTERED, now=0.0) == ["uncertain"]
    assert f.decide(CAM, dets(box(0.5, x=100)), FILTERED, now=1.0) == []


def test_defaults_match_detector_settings() -> None:
    assert FilterSettings.from_settings(DetectorSettings()) == FilterSettings()


def test_invalid_settings_are_rejected() -> None:
    with pytest.raises(ValueError, match="band"):
        FilterSettings(min_uncertain=0.7, max_uncertain=0.6)
    with pytest.raises(ValueError, match="max_per_minute"):
        FilterSettings(max_per_minute=0)
    with pytest.raises(ValueError, match="random_probability"):
        FilterSettings(random_probability=1.5)


# --- similar-observation memory ------------------------------------------------------------------


def test_similar_uncertain_box_is_not_uploaded_again_until_memory_expires() -> None:
    f = UploadFilter(replace(BASE, similarity_memory_seconds=60))
    before = metric("visionloop_detector_upload_skipped_total", "similar")
    assert f.decide(CAM, dets(box(0.4)), FILTERED, now=0.0) == ["uncertain"]
    assert f.decide(CAM, dets(box(0.5, x=1)), FILTERED, now=30.0) == []  # IoU 0.82, same category
    assert f.decide(CAM, dets(box(0.5, x=1)), FILTERED, now=59.9) == []
    assert metric("visionloop_detector_upload_skipped_total", "similar") == before + 2
    assert f.decide(CAM, dets(box(0.5, x=1)), FILTERED, now=60.0) == ["uncertain"]  # forgotten


def test_suppressed_observations_do_not_extend_the_memory() -> None:
    f = UploadFilter(replace(BASE, similarity_memory_seconds=60))
    assert f.decide(CAM, dets(box(0.4)), FILTERED, now=0.0) == ["uncertain"]
    assert f.decide(CAM, dets(box(0.4)), FILTERED, now=50.0) == []
    assert f.decide(CAM, dets(box(0.4)), FILTERED, now=61.0) == ["uncertain"]


def test_box_iou_edge_and_category() -> None:
    f = UploadFilter(BASE)
    assert f.decide(CAM, dets(box(0.4, w=10, h=10)), FILTERED, now=0.0) == ["uncertain"]
    assert f.decide(CAM, dets(box(0.4, w=10, h=5)), FILTERED, now=1.0) == []  # IoU exactly 0.5: similar
    assert f.decide(CAM, dets(box(0.4, w=10, h=4.9)), FILTERED, now=2.0) == ["uncertain"]  # IoU 0.49
    assert f.decide(CAM, dets(box(0.4, cat="c2")), FILTERED, now=3.0) == ["uncertain"]  # other category
    assert f.decide(CAM, dets(box(0.4, x=50)), FILTERED, now=4.0) == ["uncertain"]  # elsewhere


def test_category_name_identifies_when_id_is_empty() -> None:
    f = UploadFilter(BASE)
    named = detection_pb2.BoxDetection(category_name="dog", confidence=0.4, box=geometry_pb2.Box(width=10, height=10))
    other = detection_pb2.BoxDetection(category_name="cat", confidence=0.4, box=geometry_pb2.Box(width=10, height=10))
    assert f.decide(CAM, dets(named), FILTERED, now=0.0) == ["uncertain"]
    assert f.decide(CAM, dets(named), FILTERED, now=1.0) == []
    assert f.decide(CAM, dets(other), FILTERED, now=2.0) == ["uncertain"]


def test_new_uncertain_observation_uploads_frame_with_known_ones() -> None:
    f = UploadFilter(BASE)
    assert f.decide(CAM, dets(box(0.4)), FILTERED, now=0.0) == ["uncertain"]
    assert f.decide(CAM, dets(box(0.4), box(0.4, x=200)), FILTERED, now=1.0) == ["uncertain"]
    assert f.decide(CAM, dets(box(0.4), box(0.4, x=200)), FILTERED, now=2.0) == []


def test_points_are_similar_within_radius() -> None:
    f = UploadFilter(replace(BASE, point_radius_px=20))
    assert f.decide(CAM, dets(point(0.4, x=100, y=100)), FILTERED, now=0.0) == ["uncertain"]
    assert f.decide(CAM, dets(point(0.4, x=112, y=116)), FILTERED, now=1.0) == []  # distance exactly 20
    assert f.decide(CAM, dets(point(0.4, x=120.5, y=100)), FILTERED, now=2.0) == ["uncertain"]
    assert f.decide(CAM, dets(point(0.4, x=100, y=100, cat="c2")), FILTERED, now=3.0) == ["uncertain"]


def test_classifications_are_similar_by_category() -> None:
    f = UploadFilter(BASE)
    assert f.decide(CAM, dets(cls(0.4)), FILTERED, now=0.0) == ["uncertain"]
    assert f.decide(CAM, dets(cls(0.55)), FILTERED, now=1.0) == []
    assert f.decide(CAM, dets(cls(0.4, cat="c2")), FILTERED, now=2.0) == ["uncertain"]


def test_kinds_do_not_suppress_each_other() -> None:
    f = UploadFilter(BASE)
    assert f.decide(CAM, dets(box(0.4)), FILTERED, now=0.0) == ["uncertain"]
    assert f.decide(CAM, dets(seg(0.4)), FILTERED, now=1.0) == ["uncertain", "segmentation"]


def test_memory_is_per_camera() -> None:
    f = UploadFilter(BASE)
    assert f.decide("left", dets(box(0.4)), FILTERED, now=0.0) == ["uncertain"]
    assert f.decide("right", dets(box(0.4)), FILTERED, now=1.0) == ["uncertain"]
    assert f.decide("left", dets(box(0.4)), FILTERED, now=2.0) == []
    assert f.decide("", dets(box(0.4)), FILTERED, now=3.0) == ["uncertain"]  # no camera id is a group too


def test_zero_memory_time_disables_the_memory() -> None:
    f = UploadFilter(replace(BASE, similarity_memory_seconds=0))
    assert f.decide(CAM, dets(box(0.4)), FILTERED, now=0.0) == ["uncertain"]
    assert f.decide(CAM, dets(box(0.4)), FILTERED, now=0.0) == ["uncertain"]


# --- segmentations, too many detections --------------------------------------------------------


def test_every_segmentation_is_uploaded_once_per_memory() -> None:
    f = UploadFilter(BASE)
    assert f.decide(CAM, dets(seg(0.95)), FILTERED, now=0.0) == ["segmentation"]
    assert f.decide(CAM, dets(seg(0.95, x=1)), FILTERED, now=1.0) == []  # polygon bbox IoU 0.82
    assert f.decide(CAM, dets(seg(0.95, x=8)), FILTERED, now=2.0) == ["segmentation"]  # IoU 0.11
    assert f.decide(CAM, dets(seg(0.95)), FILTERED, now=61.0) == ["segmentation"]


def test_segmentation_without_polygon_uses_its_bounding_box() -> None:
    f = UploadFilter(BASE)
    assert f.decide(CAM, dets(seg(0.95, polygon=False)), FILTERED, now=0.0) == ["segmentation"]
    assert f.decide(CAM, dets(seg(0.95, polygon=True)), FILTERED, now=1.0) == []  # same rectangle
    assert f.decide(CAM, dets(seg(0.95, x=30, polygon=False)), FILTERED, now=2.0) == ["segmentation"]


def test_too_many_detections() -> None:
    f = UploadFilter(replace(BASE, max_detections=50))
    confident = [box(0.9, x=20 * i) for i in range(51)]
    assert f.decide(CAM, dets(*confident[:50]), FILTERED, now=0.0) == []
    assert f.decide(CAM, dets(*confident), FILTERED, now=1.0) == ["too_many_detections"]
    # Not an observation: the memory does not hold it back; the rate limits do.
    assert f.decide(CAM, dets(*confident), FILTERED, now=2.0) == ["too_many_detections"]
    # Counts every kind.
    mixed = [point(0.9, x=i) for i in range(20)] + [cls(0.9, cat=f"k{i}") for i in range(31)]
    assert f.decide(CAM, dets(*mixed), FILTERED, now=3.0) == ["too_many_detections"]


# --- sampling ------------------------------------------------------------------------------------


def test_close_to_threshold_sampling_edges() -> None:
    f = UploadFilter(replace(BASE, close_to_threshold_margin=0.05, sample_max_per_minute=100))
    assert f.decide(CAM, dets(box(0.25)), FILTERED, now=0.0) == ["close_to_threshold"]  # min - margin
    assert f.decide(CAM, dets(box(f32_below(0.3), x=100)), FILTERED, now=1.0) == ["close_to_threshold"]
    assert f.decide(CAM, dets(box(f32_below(0.25), x=200)), FILTERED, now=2.0) == []
    assert f.decide(CAM, dets(box(0.3, x=300)), FILTERED, now=3.0) == ["uncertain"]  # inside the band
    assert f.decide(CAM, dets(box(0.25)), FILTERED, now=4.0) == []  # remembered like uncertain ones


def test_close_to_threshold_is_limited_per_minute_and_hour() -> None:
    f = UploadFilter(replace(BASE, close_to_threshold_margin=0.05, sample_max_per_minute=1, sample_max_per_hour=2))
    before = metric("visionloop_detector_upload_skipped_total", "sample_rate_limited")
    assert f.decide(CAM, dets(box(0.27)), FILTERED, now=0.0) == ["close_to_threshold"]
    assert f.decide(CAM, dets(box(0.27, x=100)), FILTERED, now=59.0) == []  # minute budget used
    assert f.decide(CAM, dets(box(0.27, x=100)), FILTERED, now=60.0) == ["close_to_threshold"]
    assert f.decide(CAM, dets(box(0.27, x=200)), FILTERED, now=200.0) == []  # hour budget used
    assert metric("visionloop_detector_upload_skipped_total", "sample_rate_limited") == before + 2
    assert f.decide(CAM, dets(box(0.27, x=200)), FILTERED, now=3600.0) == ["close_to_threshold"]


def test_random_sampling_with_limits() -> None:
    rng = FixedRandom(0.05, 0.5, 0.01, 0.01)
    f = UploadFilter(replace(BASE, random_probability=0.1, sample_max_per_minute=1, sample_max_per_hour=10), rng)
    assert f.decide(CAM, dets(box(0.9)), FILTERED, now=0.0) == ["random"]
    assert f.decide(CAM, dets(box(0.9)), FILTERED, now=70.0) == []  # drew 0.5 >= 0.1
    assert f.decide(CAM, dets(box(0.9)), FILTERED, now=80.0) == ["random"]
    assert f.decide(CAM, dets(box(0.9)), FILTERED, now=90.0) == []  # drawn, but the minute budget is used
    assert rng.draws == 4


def test_random_sampling_is_off_by_default_and_draws_nothing() -> None:
    assert FilterSettings().random_probability == 0.0
    rng = FixedRandom(0.0)
    f = UploadFilter(replace(BASE, random_probability=0.0), rng)
    assert f.decide(CAM, dets(box(0.9)), FILTERED, now=0.0) == []
    assert rng.draws == 0


def test_random_sampling_rate_is_about_p() -> None:
    f = UploadFilter(
        replace(
            BASE,
            random_probability=0.25,
            sample_max_per_minute=10**6,
            sample_max_per_hour=10**6,
            max_per_minute=10**6,
            max_per_hour=10**6,
        ),
        random.Random(7),
    )
    picked = sum(bool(f.decide(CAM, dets(), FILTERED, now=i * 0.001)) for i in range(4000))
    assert 850 < picked < 1150


def test_sampling_budget_is_shared_and_never_blocks_other_reasons() -> None:
    rng = FixedRandom(0.0, 0.0)
    settings = replace(BASE, random_probability=0.5, close_to_threshold_margin=0.05, sample_max_per_minute=1)
    f = UploadFilter(settings, rng)
    assert f.decide(CAM, dets(box(0.27)), FILTERED, now=0.0) == ["close_to_threshold", "random"]
    # Budget used: sampling reasons drop out, the uncertain observation still uploads the frame.
    assert f.decide(CAM, dets(box(0.27, x=100), box(0.4, x=200)), FILTERED, now=1.0) == ["uncertain"]
    # The close observation dropped with its reason is not remembered.
    assert f.decide(CAM, dets(box(0.27, x=100)), FILTERED, now=61.0) == ["close_to_threshold"]


# --- global rate limits --------------------------------------------------------------------------


def test_global_rate_limit_per_minute() -> None:
    f = UploadFilter(replace(BASE, max_per_minute=3, max_per_hour=100))
    before = metric("visionloop_detector_upload_skipped_total", "rate_limited")
    results = [f.decide(CAM, dets(box(0.4, x=50 * i)), FILTERED, now=float(i)) for i in range(5)]
    assert results == [["uncertain"]] * 3 + [[]] * 2
    assert metric("visionloop_detector_upload_skipped_total", "rate_limited") == before + 2
    assert f.decide("other", dets(box(0.4)), FILTERED, now=5.0) == ["uncertain"]  # per camera
    assert f.decide(CAM, dets(box(0.4, x=500)), FILTERED, now=60.0) == ["uncertain"]  # window slid


def test_global_rate_limit_per_hour() -> None:
    f = UploadFilter(replace(BASE, max_per_minute=10, max_per_hour=3))
    assert [f.decide(CAM, dets(), ds.AUTO_UPLOAD_ALL, now=100.0 * i) for i in range(4)] == [["all"]] * 3 + [[]]
    assert f.decide(CAM, dets(), ds.AUTO_UPLOAD_ALL, now=3599.0) == []
    assert f.decide(CAM, dets(), ds.AUTO_UPLOAD_ALL, now=3600.0) == ["all"]  # the first one left the hour


def test_all_and_filtered_share_the_rate_limit() -> None:
    f = UploadFilter(replace(BASE, max_per_minute=2))
    assert f.decide(CAM, dets(), ds.AUTO_UPLOAD_ALL, now=0.0) == ["all"]
    assert f.decide(CAM, dets(box(0.4)), FILTERED, now=1.0) == ["uncertain"]
    assert f.decide(CAM, dets(), ds.AUTO_UPLOAD_ALL, now=2.0) == []
    assert f.decide(CAM, dets(box(0.4, x=100)), FILTERED, now=3.0) == []


def test_rate_limited_observation_is_not_remembered() -> None:
    f = UploadFilter(replace(BASE, max_per_minute=1))
    assert f.decide(CAM, dets(box(0.4)), FILTERED, now=0.0) == ["uncertain"]
    assert f.decide(CAM, dets(box(0.4, x=100)), FILTERED, now=10.0) == []  # rate limited
    assert f.decide(CAM, dets(box(0.4, x=100)), FILTERED, now=60.0) == ["uncertain"]  # not "similar"


# --- metrics and housekeeping --------------------------------------------------------------------


def test_upload_counter_counts_each_reason() -> None:
    f = UploadFilter(BASE)
    before = {r: metric("visionloop_detector_uploads_total", r) for r in ("uncertain", "segmentation", "all")}
    f.decide(CAM, dets(seg(0.4)), FILTERED, now=0.0)
    f.decide(CAM, dets(), ds.AUTO_UPLOAD_ALL, now=1.0)
    assert metric("visionloop_detector_uploads_total", "uncertain") == before["uncertain"] + 1
    assert metric("visionloop_detector_uploads_total", "segmentation") == before["segmentation"] + 1
    assert metric("visionloop_detector_uploads_total", "all") == before["all"] + 1


def test_quiet_cameras_are_forgotten() -> None:
    f = UploadFilter(BASE)
    for i in range(100):
        f.decide(f"cam{i}", dets(box(0.4)), FILTERED, now=float(i))
    assert f.camera_count() == 100
    f.decide(CAM, dets(), FILTERED, now=100.0 + 3600.0)
    assert f.camera_count() == 1
