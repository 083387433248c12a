"""How good a trained model is: per-class tp/fp/fn at IoU 0.5 and COCO mAP.

Points are scored as ``point_size`` boxes centred on them, which is how the reference model
learns them, so one IoU rule serves both kinds. AP follows pycocotools' ``COCOeval`` for bbox
(area range all, 100 detections per image, IoU 0.50:0.05:0.95, 101 recall points), down to its
tie-breaking, so the numbers compare with published ones. Crowd regions (COCO's iscrowd) are
handled as COCOeval does: a detection that matches no object but lies in a crowd region (its
overlap over the detection's own area) is neither a hit nor a false positive, and crowd regions
are never missed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from visionloop.common.v1 import annotation_pb2, detection_pb2, geometry_pb2, model_pb2
from visionloop.lib.geometry import box_ious
from visionloop.lib.shapes import outline_box, shape_box

# Same construction as COCOeval, so the thresholds are bit-identical.
IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1)
RECALL_THRESHOLDS = np.linspace(0.0, 1.0, int(np.round(1.0 / 0.01)) + 1)
MAX_DETECTIONS = 100  # per image and category, as COCO's largest maxDets

Box = tuple[float, float, float, float]
Point = tuple[float, float]
Item = TypeVar("Item", "Truth", "Prediction")


@dataclass(frozen=True)
class Truth:
    """One ground-truth object in image pixels: a box (x, y, width, height) or a point; or a crowd region."""

    category: str
    box: Box | None = None
    point: Point | None = None
    crowd: bool = False

    def __post_init__(self) -> None:
        _check_geometry(self.box, self.point)


@dataclass(frozen=True)
class Prediction:
    """One detection in image pixels."""

    category: str
    score: float
    box: Box | None = None
    point: Point | None = None

    def __post_init__(self) -> None:
        _check_geometry(self.box, self.point)


@dataclass(frozen=True)
class ClassResult:
    """Counts at IoU 0.5 above the score threshold, and COCO AP (0.0 when the class has no truth)."""

    tp: int
    fp: int
    fn: int
    ap50: float
    ap50_95: float


@dataclass(frozen=True)
class Evaluation:
    """Metrics over a set of images; ``classes`` holds every category passed in, in that order."""

    classes: dict[str, ClassResult]
    map50: float
    map50_95: float
    image_count: int

    def to_proto(self, category_ids: Mapping[str, str]) -> model_pb2.ModelMetrics:
        """The hub's form; ``category_ids`` maps each category name to its stable id."""
        missing = [name for name in self.classes if name not in category_ids]
        if missing:
            raise ValueError(f"no category id for {missing}")
        return model_pb2.ModelMetrics(
            classes=[
                model_pb2.ClassMetrics(
                    category_id=category_ids[name],
                    category_name=name,
                    tp=result.tp,
                    fp=result.fp,
                    fn=result.fn,
                    ap50=result.ap50,
                    ap50_95=result.ap50_95,
                )
                for name, result in self.classes.items()
            ],
            map50=self.map50,
            map50_95=self.map50_95,
            image_count=self.image_count,
        )


def evaluate(
    truths: Sequence[Sequence[Truth]],
    predictions: Sequence[Sequence[Prediction]],
    categories: Sequence[str],
    *,
    score_threshold: float = 0.3,
    point_size: float = 12.0,
) -> Evaluation:
    """Score ``predictions`` against ``truths``, both given per image in the same order.

    tp/fp/fn count predictions with ``score >= score_threshold``; AP uses every prediction.
    Objects of categories not in ``categories`` are left out.
    """
    if len(truths) != len(predictions):
        raise ValueError(f"{len(truths)} images of truths but {len(predictions)} of predictions")
    index = {name: k for k, name in enumerate(categories)}
    truth_counts = [0] * len(categories)
    # per category, one entry per image with predictions: scores sorted high to low, which of
    # them match a truth at each IoU threshold (T x D), and which are ignored (T x D: in a crowd)
    scores: list[list[np.ndarray]] = [[] for _ in categories]
    matches: list[list[np.ndarray]] = [[] for _ in categories]
    ignores: list[list[np.ndarray]] = [[] for _ in categories]
    for image_truths, image_predictions in zip(truths, predictions, strict=True):
        # crowd regions after the objects, as COCOeval sorts them (stable)
        truth_groups = {k: sorted(g, key=lambda t: t.crowd) for k, g in _by_category(image_truths, index).items()}
        for k, group in truth_groups.items():
            truth_counts[k] += sum(not t.crowd for t in group)
        for k, predicted in _by_category(image_predictions, index).items():
            image_scores = np.array([p.score for p in predicted], dtype=np.float64)
            # stable, as COCOeval: equal scores keep their input order
            order = np.argsort(-image_scores, kind="mergesort")
            image_truths_k = truth_groups.get(k, [])
            crowd = np.array([t.crowd for t in image_truths_k], dtype=bool)
            ious = box_ious(_boxes(predicted, point_size)[order], _boxes(image_truths_k, point_size), crowd)
            matched, ignored = _match(ious, crowd)
            scores[k].append(image_scores[order])
            matches[k].append(matched)
            ignores[k].append(ignored)

    classes = {
        name: _class_result(scores[k], matches[k], ignores[k], truth_counts[k], score_threshold)
        for k, name in enumerate(categories)
    }
    # COCO reports -1 for categories without truth and leaves them out of the mean
    scored = [classes[name] for k, name in enumerate(categories) if truth_counts[k] > 0]
    return Evaluation(
        classes=classes,
        map50=float(np.mean([c.ap50 for c in scored])) if scored else 0.0,
        map50_95=float(np.mean([c.ap50_95 for c in scored])) if scored else 0.0,
        image_count=len(truths),
    )


def truths_from_annotations(annotations: Iterable[annotation_pb2.Annotation]) -> list[Truth]:
    """Hub annotations of one image as truths; outlines and masks become their bounding box.

    Whole-image labels (classification) have no place in a detection metric and are skipped.
    """
    truths = []
    for annotation in annotations:
        box, point = _geometry(annotation.shape)
        if box is not None or point is not None:
            truths.append(Truth(annotation.category_name, box=box, point=point, crowd=annotation.crowd))
    return truths


def predictions_from_detections(detections: detection_pb2.Detections) -> list[Prediction]:
    """A model's detections on one image as predictions; segmentations count as their bounding box."""
    predictions = [Prediction(d.category_name, d.confidence, box=_box(d.box)) for d in detections.boxes]
    predictions += [Prediction(d.category_name, d.confidence, point=(d.point.x, d.point.y)) for d in detections.points]
    for d in detections.segmentations:
        box = _box(d.bounding_box) if d.HasField("bounding_box") else _polygon_box(d.polygon)
        if box is not None:
            predictions.append(Prediction(d.category_name, d.confidence, box=box))
    return predictions


def _check_geometry(box: Box | None, point: Point | None) -> None:
    if (box is None) == (point is None):
        raise ValueError("give exactly one of box and point")


def _geometry(shape: geometry_pb2.Shape) -> tuple[Box | None, Point | None]:
    if shape.WhichOneof("kind") == "point":
        return None, (shape.point.x, shape.point.y)
    return shape_box(shape), None


def _box(box: geometry_pb2.Box) -> Box:
    return (box.x, box.y, box.width, box.height)


def _polygon_box(polygon: geometry_pb2.Polygon) -> Box | None:
    return outline_box(polygon.points)


def _by_category(items: Iterable[Item], index: Mapping[str, int]) -> dict[int, list[Item]]:
    groups: dict[int, list[Item]] = {}
    for item in items:
        if item.category in index:
            groups.setdefault(index[item.category], []).append(item)
    return groups


def _boxes(items: Sequence[Truth | Prediction], point_size: float) -> np.ndarray:
    """N x 4 array of x, y, width, height; points become squares centred on them."""
    return np.array([_item_box(item, point_size) for item in items], dtype=np.float64).reshape(-1, 4)


def _item_box(item: Truth | Prediction, point_size: float) -> Box:
    if item.box is not None:
        return item.box
    assert item.point is not None, "_check_geometry keeps a box or a point"
    half = point_size / 2
    return (item.point[0] - half, item.point[1] - half, point_size, point_size)


def _match(ious: np.ndarray, crowd: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """T x D twice: whether each detection (sorted by score) matches a truth at each IoU
    threshold, and whether that truth is a crowd region (the detection is then ignored).

    Greedy as COCOeval: each detection takes the still-free object with the highest IoU at or
    above the threshold, the last one among equals; only when there is none, the crowd region
    that fits best, which any number of detections may share. Thresholds are handled together;
    the loop over detections stays because each one depends on what the earlier ones took.
    """
    n_dets, n_truths = ious.shape
    thresholds = IOU_THRESHOLDS[:, None]
    matched = np.zeros((len(IOU_THRESHOLDS), n_dets), dtype=bool)
    ignored = np.zeros_like(matched)
    if n_truths == 0:
        return matched, ignored
    crowd = np.zeros(n_truths, dtype=bool) if crowd is None else crowd
    taken = np.zeros((len(IOU_THRESHOLDS), n_truths), dtype=bool)
    rows = np.arange(len(IOU_THRESHOLDS))
    for d in range(n_dets):
        fits = ious[d] >= thresholds
        objects = np.where(~taken & fits & ~crowd, ious[d], -np.inf)
        regions = np.where(fits & crowd, ious[d], -np.inf)
        best_object = n_truths - 1 - np.argmax(objects[:, ::-1], axis=1)
        best_region = n_truths - 1 - np.argmax(regions[:, ::-1], axis=1)
        hit = np.isfinite(objects[rows, best_object])
        in_region = ~hit & np.isfinite(regions[rows, best_region])
        matched[hit | in_region, d] = True
        ignored[in_region, d] = True
        taken[rows[hit], best_object[hit]] = True
    return matched, ignored


def _class_result(
    scores: list[np.ndarray],
    matches: list[np.ndarray],
    ignores: list[np.ndarray],
    truth_count: int,
    score_threshold: float,
) -> ClassResult:
    empty = np.zeros((len(IOU_THRESHOLDS), 0), dtype=bool)
    all_scores = np.concatenate(scores) if scores else np.zeros(0)
    all_matches = np.concatenate(matches, axis=1) if matches else empty
    all_ignores = np.concatenate(ignores, axis=1) if ignores else empty
    # a detection's match depends only on higher-scored ones, so filtering after matching is exact
    counted = (all_scores >= score_threshold) & ~all_ignores[0]
    tp = int(all_matches[0, counted].sum())
    fp = int(counted.sum()) - tp
    if truth_count == 0:
        return ClassResult(tp=tp, fp=fp, fn=0, ap50=0.0, ap50_95=0.0)
    ap = _average_precision(
        np.concatenate([s[:MAX_DETECTIONS] for s in scores]) if scores else np.zeros(0),
        np.concatenate([m[:, :MAX_DETECTIONS] for m in matches], axis=1) if matches else all_matches,
        np.concatenate([i[:, :MAX_DETECTIONS] for i in ignores], axis=1) if ignores else all_ignores,
        truth_count,
    )
    return ClassResult(tp=tp, fp=fp, fn=truth_count - tp, ap50=float(ap[0]), ap50_95=float(ap.mean()))


def _average_precision(scores: np.ndarray, matches: np.ndarray, ignores: np.ndarray, truth_count: int) -> np.ndarray:
    """AP per IoU threshold: COCO's 101-point interpolated precision over recall."""
    if scores.size == 0:
        return np.zeros(len(IOU_THRESHOLDS))
    order = np.argsort(-scores, kind="mergesort")
    hits = matches[:, order] & ~ignores[:, order]
    misses = ~matches[:, order] & ~ignores[:, order]
    tp = np.cumsum(hits, axis=1, dtype=np.float64)
    fp = np.cumsum(misses, axis=1, dtype=np.float64)
    recall = tp / truth_count
    precision = tp / (fp + tp + np.spacing(1))
    # precision envelope: the best precision at this recall or any higher one
    precision = np.flip(np.maximum.accumulate(np.flip(precision, axis=1), axis=1), axis=1)
    sampled = np.zeros((len(IOU_THRESHOLDS), len(RECALL_THRESHOLDS)))
    for t in range(len(IOU_THRESHOLDS)):
        at = np.searchsorted(recall[t], RECALL_THRESHOLDS, side="left")
        reached = at < scores.size  # recall levels never reached count as precision 0
        sampled[t, reached] = precision[t, at[reached]]
    return sampled.mean(axis=1)
