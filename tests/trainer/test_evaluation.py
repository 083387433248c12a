"""The trainer's evaluation: hand-worked counts and APs, and parity with pycocotools' COCOeval."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from visionloop.common.v1 import annotation_pb2, detection_pb2, geometry_pb2, model_pb2
from visionloop.lib.evaluation import (
    ClassResult,
    Prediction,
    Truth,
    evaluate,
    predictions_from_detections,
    truths_from_annotations,
)

CATEGORIES = ["cup", "bolt", "screw", "nut"]  # screw is a point category; nut never has truth

# Eight images; the comments give each prediction's IoU with the truth it should match.
FIXTURE_TRUTHS: list[list[Truth]] = [
    # 0: a cup with a duplicate detection, a bolt
    [Truth("cup", (10, 10, 100, 80)), Truth("bolt", (300, 200, 40, 40))],
    # 1: two overlapping cups
    [Truth("cup", (50, 50, 100, 100)), Truth("cup", (90, 50, 100, 100))],
    # 2: only false positives
    [],
    # 3: only misses
    [Truth("cup", (200, 200, 60, 60)), Truth("screw", point=(30, 40))],
    # 4: points
    [Truth("screw", point=(100, 100)), Truth("screw", point=(200, 100))],
    # 5: equal scores
    [Truth("bolt", (0, 0, 50, 50)), Truth("bolt", (100, 0, 50, 50))],
    # 6: bolts of varied fit and score
    [Truth("bolt", (0, 0, 40, 40)), Truth("bolt", (60, 0, 40, 40)), Truth("bolt", (120, 0, 40, 40))],
    # 7: partial overlap, a low score, a category without truth
    [Truth("cup", (0, 0, 80, 80))],
]
FIXTURE_PREDICTIONS: list[list[Prediction]] = [
    [
        Prediction("cup", 0.9, (12, 12, 100, 80)),  # 0.915 tp
        Prediction("cup", 0.8, (15, 10, 100, 80)),  # duplicate: fp
        Prediction("bolt", 0.7, (305, 205, 40, 40)),  # 0.620 tp
    ],
    [
        Prediction("cup", 0.95, (80, 50, 100, 100)),  # 0.538 with the first, 0.818 with the second: tp
        Prediction("cup", 0.6, (55, 55, 100, 100)),  # 0.822 with the first: tp
        Prediction("cup", 0.2, (90, 60, 100, 90)),  # below the score threshold
    ],
    [
        Prediction("cup", 0.85, (0, 0, 50, 50)),
        Prediction("bolt", 0.4, (100, 100, 30, 30)),
        Prediction("screw", 0.5, point=(10, 10)),
    ],
    [],
    [
        Prediction("screw", 0.9, point=(103, 100)),  # 0.600 tp
        Prediction("screw", 0.8, point=(205, 100)),  # 0.412: fp
        Prediction("screw", 0.35, point=(200, 101)),  # 0.846 tp
    ],
    [
        Prediction("bolt", 0.5, (2, 2, 50, 50)),  # 0.855 tp
        Prediction("bolt", 0.5, (300, 300, 50, 50)),  # fp
        Prediction("bolt", 0.5, (100, 5, 50, 45)),  # 0.900 tp
    ],
    [
        Prediction("bolt", 0.88, (4, 4, 40, 40)),  # 0.681 tp
        Prediction("bolt", 0.66, (70, 0, 40, 40)),  # 0.600 tp
        Prediction("bolt", 0.3, (125, 2, 38, 40)),  # 0.743 tp, exactly at the score threshold
        Prediction("bolt", 0.1, (0, 100, 40, 40)),  # below the score threshold
    ],
    [
        Prediction("cup", 0.5, (20, 0, 80, 80)),  # 0.600 tp
        Prediction("cup", 0.25, (0, 0, 80, 80)),  # below the score threshold
        Prediction("nut", 0.9, (0, 0, 10, 10)),  # fp, no nut anywhere
    ],
]
FP_ONLY_IMAGE = 2


def coco_reference(
    truths: Sequence[Sequence[Truth]],
    predictions: Sequence[Sequence[Prediction]],
    categories: Sequence[str],
    point_size: float = 12.0,
) -> tuple[COCOeval, dict[str, tuple[float, float] | None]]:
    """COCOeval on the same data; per category (ap50, ap50_95), None where COCO reports -1."""

    def bbox(item: Truth | Prediction) -> list[float]:
        if item.box is not None:
            return [float(v) for v in item.box]
        x, y = item.point
        return [x - point_size / 2, y - point_size / 2, point_size, point_size]

    category_ids = {name: k + 1 for k, name in enumerate(categories)}
    annotations = [
        {"image_id": i + 1, "category_id": category_ids[t.category], "bbox": bbox(t), "iscrowd": int(t.crowd)}
        for i, image in enumerate(truths)
        for t in image
    ]
    for n, annotation in enumerate(annotations):
        annotation.update(id=n + 1, area=annotation["bbox"][2] * annotation["bbox"][3])
    results = [
        {"image_id": i + 1, "category_id": category_ids[p.category], "bbox": bbox(p), "score": p.score}
        for i, image in enumerate(predictions)
        for p in image
    ]
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {
            "images": [{"id": i + 1, "width": 640, "height": 480} for i in range(len(truths))],
            "categories": [{"id": k, "name": name} for name, k in category_ids.items()],
            "annotations": annotations,
        }
        gt.createIndex()
        coco_eval = COCOeval(gt, gt.loadRes(results), "bbox")
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    precision = coco_eval.eval["precision"][:, :, :, 0, -1]  # T x R x K at area all, 100 detections
    per_class = {
        name: None if (precision[:, :, k] < 0).any() else (precision[0, :, k].mean(), precision[:, :, k].mean())
        for k, name in enumerate(categories)
    }
    return coco_eval, per_class


def assert_matches_coco(
    truths: Sequence[Sequence[Truth]], predictions: Sequence[Sequence[Prediction]], categories: Sequence[str]
) -> None:
    result = evaluate(truths, predictions, categories)
    coco_eval, per_class = coco_reference(truths, predictions, categories)
    assert result.map50_95 == pytest.approx(coco_eval.stats[0], abs=1e-3)
    assert result.map50 == pytest.approx(coco_eval.stats[1], abs=1e-3)
    for name, reference in per_class.items():
        expected = reference if reference is not None else (0.0, 0.0)
        assert (result.classes[name].ap50, result.classes[name].ap50_95) == pytest.approx(expected, abs=1e-3), name


def test_fixture_counts_worked_by_hand() -> None:
    result = evaluate(FIXTURE_TRUTHS, FIXTURE_PREDICTIONS, CATEGORIES)

    counts = {name: (c.tp, c.fp, c.fn) for name, c in result.classes.items()}
    assert counts == {"cup": (4, 2, 1), "bolt": (6, 2, 0), "screw": (2, 2, 1), "nut": (0, 1, 0)}
    assert list(result.classes) == CATEGORIES
    assert result.image_count == 8


def test_fixture_matches_pycocotools() -> None:
    result = evaluate(FIXTURE_TRUTHS, FIXTURE_PREDICTIONS, CATEGORIES)

    assert 0.3 < result.map50_95 < result.map50 < 1.0  # the fixture is neither trivial nor empty
    assert result.classes["nut"].ap50 == 0.0
    assert_matches_coco(FIXTURE_TRUTHS, FIXTURE_PREDICTIONS, CATEGORIES)


def test_fp_only_image_counts() -> None:
    keep = [i for i in range(len(FIXTURE_TRUTHS)) if i != FP_ONLY_IMAGE]
    truths = [FIXTURE_TRUTHS[i] for i in keep]
    predictions = [FIXTURE_PREDICTIONS[i] for i in keep]

    with_image = evaluate(FIXTURE_TRUTHS, FIXTURE_PREDICTIONS, CATEGORIES)
    without_image = evaluate(truths, predictions, CATEGORIES)

    for name in ("cup", "bolt", "screw"):
        assert with_image.classes[name].fp == without_image.classes[name].fp + 1, name
        assert with_image.classes[name].ap50 < without_image.classes[name].ap50, name
    assert_matches_coco(truths, predictions, CATEGORIES)


def test_false_positive_on_image_without_truth() -> None:
    truths = [[Truth("cup", (0, 0, 10, 10))], []]
    predictions = [[Prediction("cup", 0.9, (0, 0, 10, 10))], [Prediction("cup", 0.95, (50, 50, 10, 10))]]

    result = evaluate(truths, predictions, ["cup"])

    # ranked fp then tp: precision 0.5 at every recall level
    assert result.classes["cup"] == ClassResult(tp=1, fp=1, fn=0, ap50=pytest.approx(0.5), ap50_95=pytest.approx(0.5))
    assert result.map50 == pytest.approx(0.5)
    assert_matches_coco(truths, predictions, ["cup"])


def test_miss_on_image_without_predictions() -> None:
    truths = [[Truth("cup", (0, 0, 10, 10))], [Truth("cup", (50, 50, 10, 10))]]
    predictions = [[Prediction("cup", 0.9, (0, 0, 10, 10))], []]

    result = evaluate(truths, predictions, ["cup"])

    # recall stops at 0.5: precision 1 on the 51 recall points 0.00..0.50, 0 on the rest
    assert result.classes["cup"] == ClassResult(
        tp=1, fp=0, fn=1, ap50=pytest.approx(51 / 101), ap50_95=pytest.approx(51 / 101)
    )
    assert_matches_coco(truths, predictions, ["cup"])


def test_duplicate_detection_is_a_false_positive() -> None:
    truths = [[Truth("cup", (0, 0, 100, 100))]]
    predictions = [[Prediction("cup", 0.9, (0, 0, 100, 100)), Prediction("cup", 0.8, (1, 1, 100, 100))]]

    result = evaluate(truths, predictions, ["cup"])

    assert (result.classes["cup"].tp, result.classes["cup"].fp, result.classes["cup"].fn) == (1, 1, 0)
    assert result.classes["cup"].ap50 == pytest.approx(1.0)


def test_overlapping_truths_take_the_best_iou() -> None:
    truths = [[Truth("cup", (0, 0, 100, 100)), Truth("cup", (40, 0, 100, 100))]]
    predictions = [
        [
            Prediction("cup", 0.9, (30, 0, 100, 100)),  # 0.538 with the first, 0.818 with the second
            Prediction("cup", 0.8, (0, 0, 100, 100)),  # 1.0 with the first, 0.429 with the second
        ]
    ]

    result = evaluate(truths, predictions, ["cup"])

    # taking the first truth above 0.5 would leave the second prediction unmatched
    assert (result.classes["cup"].tp, result.classes["cup"].fp, result.classes["cup"].fn) == (2, 0, 0)
    assert_matches_coco(truths, predictions, ["cup"])


def test_equal_iou_goes_to_the_last_truth_as_coco() -> None:
    truths = [[Truth("cup", (0, 0, 100, 100)), Truth("cup", (20, 0, 100, 100))]]
    predictions = [
        [
            Prediction("cup", 0.9, (10, 0, 100, 100)),  # 0.818 with both
            Prediction("cup", 0.8, (0, 0, 100, 100)),  # 1.0 with the first, 0.667 with the second
        ]
    ]

    result = evaluate(truths, predictions, ["cup"])

    # up to IoU 0.80 both match (AP 1); from 0.85 only the second, ranked fp, tp (AP 0.5 * 51 / 101)
    assert result.classes["cup"].ap50_95 == pytest.approx((7 + 3 * 0.5 * 51 / 101) / 10)
    assert_matches_coco(truths, predictions, ["cup"])


def test_higher_score_matches_first() -> None:
    truths = [[Truth("cup", (0, 0, 100, 100))]]
    predictions = [
        [
            Prediction("cup", 0.6, (0, 0, 100, 100)),  # IoU 1.0
            Prediction("cup", 0.9, (30, 0, 100, 100)),  # IoU 0.538: takes the truth at 0.50 only
        ]
    ]

    result = evaluate(truths, predictions, ["cup"])

    assert (result.classes["cup"].tp, result.classes["cup"].fp, result.classes["cup"].fn) == (1, 1, 0)
    # at 0.50 ranked tp, fp: AP 1; from 0.55 on ranked fp, tp: AP 0.5
    assert result.classes["cup"].ap50 == pytest.approx(1.0)
    assert result.classes["cup"].ap50_95 == pytest.approx((1.0 + 9 * 0.5) / 10)
    assert_matches_coco(truths, predictions, ["cup"])


def test_score_threshold_limits_counts_not_ap() -> None:
    truths = [[Truth("cup", (0, 0, 10, 10))]]
    predictions = [[Prediction("cup", 0.2, (0, 0, 10, 10))]]

    low = evaluate(truths, predictions, ["cup"])
    lower = evaluate(truths, predictions, ["cup"], score_threshold=0.2)

    assert (low.classes["cup"].tp, low.classes["cup"].fp, low.classes["cup"].fn) == (0, 0, 1)
    assert (lower.classes["cup"].tp, lower.classes["cup"].fp, lower.classes["cup"].fn) == (1, 0, 0)
    assert low.classes["cup"].ap50 == lower.classes["cup"].ap50 == pytest.approx(1.0)


def test_points_are_boxes_of_point_size() -> None:
    truths = [[Truth("screw", point=(100, 100)), Truth("screw", point=(200, 100))]]
    predictions = [
        [
            Prediction("screw", 0.9, point=(103, 100)),  # 12 px boxes: 108 / 180 = 0.6
            Prediction("screw", 0.8, point=(205, 100)),  # 84 / 204 = 0.41
        ]
    ]

    default = evaluate(truths, predictions, ["screw"])
    larger = evaluate(truths, predictions, ["screw"], point_size=24.0)  # 19 * 24 / (2 * 576 - 456) = 0.66

    assert (default.classes["screw"].tp, default.classes["screw"].fp, default.classes["screw"].fn) == (1, 1, 1)
    assert (larger.classes["screw"].tp, larger.classes["screw"].fp, larger.classes["screw"].fn) == (2, 0, 0)


def test_map_leaves_out_categories_without_truth() -> None:
    truths = [[Truth("cup", (0, 0, 10, 10))]]
    predictions = [[Prediction("cup", 0.9, (0, 0, 10, 10)), Prediction("nut", 0.9, (20, 20, 10, 10))]]

    result = evaluate(truths, predictions, ["cup", "nut", "bolt"])

    assert result.map50 == pytest.approx(1.0)
    assert result.map50_95 == pytest.approx(1.0)
    assert result.classes["nut"] == ClassResult(tp=0, fp=1, fn=0, ap50=0.0, ap50_95=0.0)
    assert result.classes["bolt"] == ClassResult(tp=0, fp=0, fn=0, ap50=0.0, ap50_95=0.0)


def test_nothing_to_evaluate() -> None:
    result = evaluate([[], []], [[Prediction("nut", 0.9, (0, 0, 10, 10))], []], ["nut"])

    assert (result.map50, result.map50_95, result.image_count) == (0.0, 0.0, 2)
    assert result.classes["nut"].fp == 1


def test_unknown_categories_are_left_out() -> None:
    truths = [[Truth("cup", (0, 0, 10, 10)), Truth("mug", (0, 0, 10, 10))]]
    predictions = [[Prediction("cup", 0.9, (0, 0, 10, 10)), Prediction("mug", 0.9, (30, 30, 10, 10))]]

    result = evaluate(truths, predictions, ["cup"])

    assert list(result.classes) == ["cup"]
    assert (result.classes["cup"].tp, result.classes["cup"].fp, result.classes["cup"].fn) == (1, 0, 0)


def test_random_scenes_match_pycocotools() -> None:
    """Jittered, duplicated and spurious boxes with tied scores and one image over 100 detections."""
    rng = np.random.default_rng(7)
    categories = ["a", "b", "c"]
    truths: list[list[Truth]] = []
    predictions: list[list[Prediction]] = []
    for _ in range(15):
        image_truths = []
        for _ in range(rng.integers(0, 7)):
            x, y = rng.uniform(0, 500, 2)
            w, h = rng.uniform(5, 120, 2)
            image_truths.append(Truth(str(rng.choice(categories)), (x, y, w, h)))
        image_predictions = []
        for truth in image_truths:
            for _ in range(rng.integers(0, 3)):  # misses, hits and duplicates
                x, y, w, h = truth.box
                jitter = rng.normal(0, 0.15, 4) * [w, h, w, h]
                box = (x + jitter[0], y + jitter[1], max(w + jitter[2], 1.0), max(h + jitter[3], 1.0))
                image_predictions.append(Prediction(truth.category, round(float(rng.uniform()), 1), box))
        for _ in range(rng.integers(0, 4)):
            x, y = rng.uniform(0, 500, 2)
            box = (x, y, *rng.uniform(5, 120, 2))
            image_predictions.append(Prediction(str(rng.choice(categories)), round(float(rng.uniform()), 2), box))
        truths.append(image_truths)
        predictions.append(image_predictions)
    # over 100 detections of one category in one image: COCO keeps the 100 best, so this hit is lost
    truths[4] = [Truth("a", (10, 10, 50, 50)), Truth("a", (300, 300, 50, 50))]
    predictions[4] = [Prediction("a", 0.05, (12, 10, 50, 50)), Prediction("a", 0.95, (300, 302, 50, 50))]
    predictions[4] += [Prediction("a", 0.1 + i / 200, (600 + i, 0, 20, 20)) for i in range(130)]

    assert_matches_coco(truths, predictions, categories)


def test_crowd_regions_are_ignored_as_coco_does() -> None:
    """A detection inside a crowd region is neither hit nor false positive; the region is never missed."""
    truths = [[Truth("cup", (0, 0, 40, 40)), Truth("cup", (100, 0, 200, 200), crowd=True)]]
    predictions = [
        [
            Prediction("cup", 0.9, (0, 0, 40, 40)),  # the object
            Prediction("cup", 0.8, (110, 10, 30, 30)),  # in the crowd: IoU with it is 900/900
            Prediction("cup", 0.7, (150, 50, 30, 30)),  # in the crowd too: regions take any number
            Prediction("cup", 0.6, (400, 400, 30, 30)),  # nowhere: fp
        ]
    ]
    result = evaluate(truths, predictions, ["cup"])
    assert (result.classes["cup"].tp, result.classes["cup"].fp, result.classes["cup"].fn) == (1, 1, 0)
    assert result.map50 == pytest.approx(1.0)
    assert_matches_coco(truths, predictions, ["cup"])

    # Without the flag the region is an object: a miss, and the detections in it false positives.
    plain = [[Truth("cup", (0, 0, 40, 40)), Truth("cup", (100, 0, 200, 200))]]
    assert evaluate(plain, predictions, ["cup"]).map50 < 0.6


def test_random_scenes_with_crowd_regions_match_pycocotools() -> None:
    """Crowd regions among objects, overlapping them, alone in an image and in a class without objects."""
    rng = np.random.default_rng(11)
    categories = ["a", "b", "c"]
    truths: list[list[Truth]] = []
    predictions: list[list[Prediction]] = []
    for image in range(20):
        image_truths = []
        for _ in range(rng.integers(0, 6)):
            x, y = rng.uniform(0, 400, 2)
            w, h = rng.uniform(10, 150, 2)
            crowd = bool(rng.uniform() < 0.3)
            image_truths.append(Truth(str(rng.choice(categories[:2])), (x, y, w, h), crowd=crowd))
        if image % 5 == 0:  # only crowd regions in class c
            image_truths.append(Truth("c", (50, 50, 200, 200), crowd=True))
        image_predictions = []
        for truth in image_truths:
            x, y, w, h = truth.box
            for _ in range(rng.integers(0, 4)):  # hits and duplicates, and detections inside crowds
                if truth.crowd:
                    px, py = x + rng.uniform(0, w * 0.7), y + rng.uniform(0, h * 0.7)
                    box = (px, py, max(w * rng.uniform(0.1, 0.4), 1.0), max(h * rng.uniform(0.1, 0.4), 1.0))
                else:
                    jitter = rng.normal(0, 0.15, 4) * [w, h, w, h]
                    box = (x + jitter[0], y + jitter[1], max(w + jitter[2], 1.0), max(h + jitter[3], 1.0))
                image_predictions.append(Prediction(truth.category, round(float(rng.uniform()), 1), box))
        for _ in range(rng.integers(0, 3)):
            box = (*rng.uniform(0, 500, 2), *rng.uniform(5, 120, 2))
            image_predictions.append(Prediction(str(rng.choice(categories)), round(float(rng.uniform()), 2), box))
        truths.append(image_truths)
        predictions.append(image_predictions)
    assert sum(t.crowd for image in truths for t in image) > 10

    assert_matches_coco(truths, predictions, categories)


def test_to_proto() -> None:
    result = evaluate(FIXTURE_TRUTHS, FIXTURE_PREDICTIONS, CATEGORIES)
    ids = {"cup": "c-1", "bolt": "c-2", "screw": "c-3", "nut": "c-4"}

    metrics = model_pb2.ModelMetrics.FromString(result.to_proto(ids).SerializeToString())

    assert [(c.category_id, c.category_name, c.tp, c.fp, c.fn) for c in metrics.classes] == [
        ("c-1", "cup", 4, 2, 1),
        ("c-2", "bolt", 6, 2, 0),
        ("c-3", "screw", 2, 2, 1),
        ("c-4", "nut", 0, 1, 0),
    ]
    assert [(c.ap50, c.ap50_95) for c in metrics.classes] == [(c.ap50, c.ap50_95) for c in result.classes.values()]
    assert (metrics.map50, metrics.map50_95, metrics.image_count) == (result.map50, result.map50_95, 8)
    with pytest.raises(ValueError, match="nut"):
        result.to_proto({"cup": "c-1", "bolt": "c-2", "screw": "c-3"})


def test_truths_from_annotations() -> None:
    annotations = [
        annotation_pb2.Annotation(
            category_name="cup", shape=geometry_pb2.Shape(box=geometry_pb2.Box(x=1.5, y=2, width=30, height=40))
        ),
        annotation_pb2.Annotation(category_name="screw", shape=geometry_pb2.Shape(point=geometry_pb2.Point(x=7, y=8))),
        annotation_pb2.Annotation(
            category_name="leaf",
            shape=geometry_pb2.Shape(
                polygon=geometry_pb2.Polygon(
                    points=[
                        geometry_pb2.Point(x=10, y=20),
                        geometry_pb2.Point(x=50, y=5),
                        geometry_pb2.Point(x=30, y=60),
                    ]
                )
            ),
        ),
        annotation_pb2.Annotation(category_name="day", shape=geometry_pb2.Shape(whole_image=geometry_pb2.WholeImage())),
        annotation_pb2.Annotation(category_name="empty"),
        annotation_pb2.Annotation(
            category_name="leaf",
            crowd=True,
            shape=geometry_pb2.Shape(mask=geometry_pb2.Mask(width=4, height=3, counts=[5, 2, 2, 2, 1])),
        ),
        annotation_pb2.Annotation(
            category_name="leaf",
            shape=geometry_pb2.Shape(
                multi_polygon=geometry_pb2.MultiPolygon(
                    polygons=[
                        geometry_pb2.Polygon(
                            points=[geometry_pb2.Point(x=x, y=y) for x, y in [(1, 1), (4, 1), (4, 3)]]
                        ),
                        geometry_pb2.Polygon(
                            points=[geometry_pb2.Point(x=x, y=y) for x, y in [(8, 6), (9, 9), (6, 7)]]
                        ),
                    ]
                )
            ),
        ),
    ]

    assert truths_from_annotations(annotations) == [
        Truth("cup", box=(1.5, 2, 30, 40)),
        Truth("screw", point=(7, 8)),
        Truth("leaf", box=(10, 5, 40, 55)),
        Truth("leaf", box=(1, 1, 2, 2), crowd=True),  # rows 1-2, columns 1-2 of the mask
        Truth("leaf", box=(1, 1, 8, 8)),
    ]


def test_predictions_from_detections() -> None:
    detections = detection_pb2.Detections(
        boxes=[
            detection_pb2.BoxDetection(
                category_name="cup", confidence=0.75, box=geometry_pb2.Box(x=1, y=2, width=3, height=4)
            )
        ],
        points=[
            detection_pb2.PointDetection(category_name="screw", confidence=0.5, point=geometry_pb2.Point(x=9, y=9))
        ],
        segmentations=[
            detection_pb2.SegmentationDetection(
                category_name="leaf", confidence=0.25, bounding_box=geometry_pb2.Box(x=0, y=0, width=8, height=8)
            ),
            detection_pb2.SegmentationDetection(
                category_name="leaf",
                confidence=0.125,
                polygon=geometry_pb2.Polygon(
                    points=[geometry_pb2.Point(x=1, y=1), geometry_pb2.Point(x=5, y=1), geometry_pb2.Point(x=5, y=3)]
                ),
            ),
        ],
        classifications=[detection_pb2.ClassificationDetection(category_name="day", confidence=0.9)],
    )

    assert predictions_from_detections(detections) == [
        Prediction("cup", 0.75, box=(1, 2, 3, 4)),
        Prediction("screw", 0.5, point=(9, 9)),
        Prediction("leaf", 0.25, box=(0, 0, 8, 8)),
        Prediction("leaf", 0.125, box=(1, 1, 4, 2)),
    ]


def test_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        Truth("cup")
    with pytest.raises(ValueError, match="exactly one"):
        Prediction("cup", 0.5, box=(0, 0, 1, 1), point=(0, 0))
    with pytest.raises(ValueError, match="images"):
        evaluate([[]], [], ["cup"])
