"""Which images people label next: the acquisition function behind a label budget.

The candidates are unlabelled images with the current model's detections on them. ``select`` picks
``budget`` of them and returns them in the order people should label them, in three stages: the
two of PPAL ("Plug and Play Active Learning for Object Detection", Yang et al. 2022), uncertainty
then diversity, with the novelty of an image's look joining the uncertainty between them.

1. Uncertainty, per image. Detections of different categories on the same spot (boxes
   overlapping at IoU >= 0.5, points within 8 px) form one object whose class distribution is
   their confidences plus the mass left over ("none of these"), normalised. Per object: least
   confidence ``1 - p1``, margin ``1 - (p1 - p2)`` or entropy ``-sum p log p / log K`` (AIDE's
   rankers). Each object's score is multiplied by its categories' rarity weights (weighted by
   their confidences), ``sqrt(mean count / (count + 1))`` over the objects already labelled, at
   most ``RARE_BOOST_MAX``: categories the labelled set holds few of count more (PPAL's
   difficulty-calibrated uncertainty, Lightly's class balancing). An image's uncertainty is its
   most uncertain object's by default, or the sum or mean over its objects. PPAL sums; on a
   robot's stream the sum ranks cluttered frames (a weed patch of twelve fairly sure weeds) above
   the frame with the one object the model cannot place, and the max reducer chose better
   (``visionloop experiment``, docs/demo.md). The boost is what finds a rare category: a model
   shown a few of them scores them low, and a "thistle 0.3" (0.3) only outranks an unsure weed
   (0.5) once boosted. A category the model does not score at all yet, no uncertainty finds.
2. Novelty of look, for what the model cannot be unsure about yet. A category the model has never
   been shown enough of, it scores nowhere (on the rows field the bootstrap model's thistle score
   ranks thistle frames little better than chance), so no uncertainty points at it. What does point at
   it is that it looks unlike everything else: each image is cut into 16-pixel cells (at most 256
   pixels on its longer side), each cell described by its colour (CIELAB mean, spread and 5th/95th
   percentiles), and an image's novelty is its most unusual cell's distance to its
   ``NOVELTY_NEIGHBOURS``-th nearest cell among the candidates' and the labelled images' (a sample
   of each): the patch-level nearest-neighbour score of PatchCore (Roth et al. 2022) on cheap
   colour cells instead of a pretrained network's features, against the pool and the labelled set
   together, so a thing met in twenty frames of one drive and never labelled still stands out,
   and stops standing out once labelled. With ``Criteria.novelty`` an image's value for the
   diversity stage (3) is the mean of its uncertainty's rank and its novelty's rank among the
   candidates (ranks, because the two have no common scale): half "the model is unsure", half
   "nothing like it has been labelled". Chosen on seeds 10-13 of the rows field, where it took
   the acquisition from +0.057 to +0.105 mAP@0.5 ahead of random with a trainer that did not yet
   oversample rare categories; with it the acquisition leads at small budgets and is level with
   random at 10 % (``visionloop experiment``, docs/demo.md).
3. Diversity. Greedy: each pick is the candidate of highest value x distance, the value its
   uncertainty (with novelty, the mix of stage 2), the distance to the nearest image picked or
   already labelled over the median distance between two candidates, capped at 1: a weighted
   k-centre (core-set), as Lightly's combined "diverse and uncertain" selection, standing in for
   PPAL's second stage (k-centre over the uncertain with a detection-matching image similarity)
   with a cheaper embedding. A robot streams near-duplicate
   frames: without this stage one unsure plant seen in twenty frames would take twenty labels;
   with it, a near copy of a pick has a distance close to 0 and waits until nothing new is left.

The embedding (``embedding``) is the image's look (a grey 8x8 thumbnail and a colour histogram)
beside what it holds (per category, the square root of the summed confidence: the expected
number of objects, so labelled images, whose objects count 1 each, share the space), so two
frames are close when they look alike and hold the same things. Roboflow's samplers (random,
by class, by confidence band) are the baselines the experiment measures this against.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum

import cv2
import numpy as np

from visionloop.common.v1 import detection_pb2
from visionloop.lib.geometry import box_iou

SAME_SPOT_IOU = 0.5
SAME_SPOT_PIXELS = 8.0
RARE_BOOST_MAX = 4.0  # the most a category's rarity multiplies its objects' uncertainty
PATCH_SIDE = 256  # an image's longer side when cut into cells: novelty does not depend on resolution
PATCH_CELL = 16  # cell side in pixels: about the size of a small object's telling part (a flower head)
# The k of the k-nearest-neighbour distance: above 1 so that a cell's own copy (the same cell in the
# sample) or one near copy does not make it ordinary, small so that a thing seen in a few frames counts.
NOVELTY_NEIGHBOURS = 5
NOVELTY_SAMPLE = 8192  # cells sampled from the candidates and again from the labelled images: bounded cost
NOVELTY_SCREEN = 512  # cells of that sample every cell is screened against (nearest one)
NOVELTY_REFINED = 12  # an image's most unusual cells by the screen, measured against the whole sample


class Ranker(IntEnum):
    """Per-object uncertainty; the numbers of the annotator contract's ``Ranker``."""

    LEAST_CONFIDENCE = 1
    MARGIN = 2
    ENTROPY = 3


class Reducer(IntEnum):
    """Object scores to an image's; the numbers of the annotator contract's ``Reducer``."""

    MAX = 1
    MEAN = 2
    SUM = 3


@dataclass(frozen=True)
class Criteria:
    """How candidates are scored: per-object uncertainty, per-image reduction, rare boost, diversity."""

    ranker: int = Ranker.LEAST_CONFIDENCE
    reducer: int = Reducer.MAX
    rare_boost: bool = True
    diversity: bool = True
    novelty: bool = True


@dataclass
class Candidate:
    """One unlabelled image: the model's detections on it, for diversity its embedding, for novelty
    its cells (``patches``)."""

    key: str
    detections: detection_pb2.Detections
    embedding: np.ndarray | None = field(default=None, repr=False)
    patches: np.ndarray | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Pick:
    key: str
    uncertainty: float  # the image's (rarity-weighted) uncertainty
    priority: float  # in (0, 1]: the first pick 1, the last 1/budget; later picks are labelled later


@dataclass
class _Object:
    kind: str
    where: tuple[float, ...]
    scores: dict[str, float]  # category -> confidence


def _same_spot(kind: str, a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    if kind == "point":
        return math.dist(a, b) <= SAME_SPOT_PIXELS
    if kind == "image":
        return True
    return box_iou(a, b) >= SAME_SPOT_IOU


def _items(detections: detection_pb2.Detections) -> list[tuple[str, tuple[float, ...], str, float]]:
    items: list[tuple[str, tuple[float, ...], str, float]] = []
    for box in detections.boxes:
        where: tuple[float, ...] = (box.box.x, box.box.y, box.box.width, box.box.height)
        items.append(("box", where, box.category_id or box.category_name, box.confidence))
    for seg in detections.segmentations:
        b = seg.bounding_box
        items.append(("box", (b.x, b.y, b.width, b.height), seg.category_id or seg.category_name, seg.confidence))
    for point in detections.points:
        where = (point.point.x, point.point.y)
        items.append(("point", where, point.category_id or point.category_name, point.confidence))
    for label in detections.classifications:
        items.append(("image", (), label.category_id or label.category_name, label.confidence))
    return items


def _objects(detections: detection_pb2.Detections) -> list[_Object]:
    seen: list[_Object] = []
    for kind, where, category, confidence in _items(detections):
        for candidate in seen:
            if candidate.kind == kind and _same_spot(kind, candidate.where, where):
                candidate.scores[category] = max(confidence, candidate.scores.get(category, 0.0))
                break
        else:
            seen.append(_Object(kind, where, {category: confidence}))
    return seen


def objects(detections: detection_pb2.Detections) -> list[list[float]]:
    """Per object, the confidences of the categories the model gave it."""
    return [list(o.scores.values()) for o in _objects(detections)]


def distribution(scores: Sequence[float]) -> np.ndarray:
    values = np.clip(np.asarray(scores, np.float64), 0, 1)
    rest = max(0.0, 1.0 - float(values.sum()))
    values = np.append(values, rest) if rest > 0 or len(values) == 1 else values
    return values / values.sum() if values.sum() > 0 else np.full(len(values), 1 / len(values))


def object_score(scores: Sequence[float], ranker: int) -> float:
    """One object's uncertainty in [0, 1] by ``ranker`` (least confidence, margin or entropy)."""
    p = np.sort(distribution(scores))[::-1]
    if ranker == Ranker.MARGIN:
        return float(1 - (p[0] - (p[1] if len(p) > 1 else 0.0)))
    if ranker == Ranker.ENTROPY:
        nonzero = p[p > 0]
        return float(-(nonzero * np.log(nonzero)).sum() / math.log(len(p))) if len(p) > 1 else 0.0
    return float(1 - p[0])  # least confidence (the default)


def reduce(scores: Sequence[float], reducer: int) -> float:
    """Object scores to the image's: max (the default), mean or sum; 0 without objects."""
    if not scores:
        return 0.0
    if reducer == Reducer.MEAN:
        return float(np.mean(scores))
    if reducer == Reducer.SUM:
        return float(np.sum(scores))
    return float(max(scores))


def category_weights(labelled: Mapping[str, int], categories: Sequence[str]) -> dict[str, float]:
    """Per category, how much more its objects count: ``sqrt(mean count / (count + 1))`` in [1, RARE_BOOST_MAX].

    ``labelled``: objects of each category in the labelled images. With nothing labelled yet, 1 each.
    """
    if not categories:
        return {}
    counts = [max(0, labelled.get(c, 0)) for c in categories]
    mean = sum(counts) / len(counts)
    if mean == 0:
        return dict.fromkeys(categories, 1.0)
    boost = {c: math.sqrt(mean / (n + 1)) for c, n in zip(categories, counts, strict=True)}
    return {c: float(np.clip(b, 1.0, RARE_BOOST_MAX)) for c, b in boost.items()}


def uncertainty(
    detections: detection_pb2.Detections,
    ranker: int = Ranker.LEAST_CONFIDENCE,
    reducer: int = Reducer.MAX,
    weights: Mapping[str, float] | None = None,
) -> float:
    """The image's uncertainty: its objects' scores, each times its likeliest category's weight, reduced."""
    scores = []
    for obj in _objects(detections):
        score = object_score(list(obj.scores.values()), ranker)
        if weights:
            # The categories' weights, weighted by how likely each is: a thistle the model calls
            # "weed 0.4, thistle 0.2" counts as a third thistle.
            mass = sum(obj.scores.values())
            if mass > 0:
                score *= sum(p * weights.get(c, 1.0) for c, p in obj.scores.items()) / mass
        scores.append(score)
    return reduce(scores, reducer)


def embedding(image: np.ndarray, detections: detection_pb2.Detections, categories: Sequence[str]) -> np.ndarray:
    """The image's look and what the model found in it, as one vector (see the module)."""
    return np.concatenate([appearance(image), findings(detections, categories)])


def appearance(image: np.ndarray) -> np.ndarray:
    """A grey 8x8 thumbnail and an 8-bin-per-channel colour histogram (BGR pixels)."""
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    thumb = cv2.resize(grey, (8, 8), interpolation=cv2.INTER_AREA).astype(np.float64).ravel() / 255.0
    hist = np.concatenate([np.bincount(image[..., c].ravel() // 32, minlength=8) for c in range(3)]).astype(np.float64)
    hist /= max(1.0, hist.sum() / 3)
    return np.concatenate([thumb / 8.0, hist])


def findings(detections: detection_pb2.Detections, categories: Sequence[str]) -> np.ndarray:
    """Per category: the square root of the detections' summed confidence (expected objects), / 4."""
    index = {c: k for k, c in enumerate(categories)}
    mass = np.zeros(len(categories))
    for _, _, category, confidence in _items(detections):
        k = index.get(category)
        if k is not None:
            mass[k] += confidence
    return np.sqrt(mass) / 4.0


def patches(image: np.ndarray) -> np.ndarray:
    """The image's cells as rows (see the module): CIELAB mean, spread, 95th and 5th percentile, / 32.

    ``image``: HxWx3 BGR uint8. An image smaller than a cell is one cell.
    """
    height, width = image.shape[:2]
    scale = min(1.0, PATCH_SIDE / max(height, width))
    if scale < 1.0:
        image = cv2.resize(
            image, (max(1, round(width * scale)), max(1, round(height * scale))), interpolation=cv2.INTER_AREA
        )
    lab = cv2.cvtColor(image, cv2.COLOR_BGR2LAB).astype(np.float32)
    rows, columns = max(1, lab.shape[0] // PATCH_CELL), max(1, lab.shape[1] // PATCH_CELL)
    cell_h, cell_w = min(PATCH_CELL, lab.shape[0]), min(PATCH_CELL, lab.shape[1])
    lab = lab[: rows * cell_h, : columns * cell_w]
    cells = lab.reshape(rows, cell_h, columns, cell_w, 3).transpose(0, 2, 1, 3, 4).reshape(-1, cell_h * cell_w, 3)
    low, high = np.percentile(cells, [5, 95], axis=1)
    return (np.concatenate([cells.mean(axis=1), cells.std(axis=1), high, low], axis=1) / 32.0).astype(np.float32)


def novelty(candidates: Sequence[np.ndarray], reference: np.ndarray | None = None) -> np.ndarray:
    """Per candidate (its ``patches``), its most unusual cell's distance to the ``NOVELTY_NEIGHBOURS``-th
    nearest cell among a sample of the candidates' cells and of ``reference`` (labelled images' cells).

    Two passes, for speed: every cell against ``NOVELTY_SCREEN`` cells of the sample (second nearest
    one), then each candidate's ``NOVELTY_REFINED`` most unusual cells by that against the whole
    sample: the most unusual cell of an image is among those that screen as most unusual. A sample no
    larger than the screen is measured in one pass.
    """
    if not len(candidates):
        return np.zeros(0)
    counts = [len(c) for c in candidates]
    cells = np.concatenate(candidates).astype(np.float32)
    rng = np.random.default_rng(0)  # the same candidates get the same scores
    bank = [cells[rng.choice(len(cells), min(NOVELTY_SAMPLE, len(cells)), replace=False)]]
    if reference is not None and len(reference):
        bank.append(reference[rng.choice(len(reference), min(NOVELTY_SAMPLE, len(reference)), replace=False)])
    pool = rng.permutation(np.concatenate(bank).astype(np.float32))
    k = min(NOVELTY_NEIGHBOURS, len(pool) - 1)
    if len(pool) <= NOVELTY_SCREEN or max(counts) <= NOVELTY_REFINED:  # small enough: every cell measured
        return _per_image_max(_kth_distance(cells, pool, k), counts)
    # The second nearest: a cell that is in the screen's sample itself is not made ordinary by its copy.
    screen = _kth_distance(cells, pool[:NOVELTY_SCREEN], 1)
    ends = np.cumsum(counts)
    chosen = np.concatenate(
        [end - n + np.argsort(-screen[end - n : end])[:NOVELTY_REFINED] for n, end in zip(counts, ends, strict=True)]
    )
    return _per_image_max(_kth_distance(cells[chosen], pool, k), [min(n, NOVELTY_REFINED) for n in counts])


def _per_image_max(values: np.ndarray, sizes: Sequence[int]) -> np.ndarray:
    """The largest of each image's run of ``values`` (runs of ``sizes``, in order; 0 for an empty run)."""
    result = np.zeros(len(sizes))
    np.maximum.at(result, np.repeat(np.arange(len(sizes)), sizes), values)
    return result


def _kth_distance(cells: np.ndarray, pool: np.ndarray, k: int) -> np.ndarray:
    """Each cell's distance to its ``k``-th nearest (0-based) row of ``pool``."""
    squared = (pool**2).sum(axis=1)
    distance = np.empty(len(cells))
    for start in range(0, len(cells), 1024):  # bounded memory: 1024 x the pool at a time
        block = cells[start : start + 1024]
        d2 = (block**2).sum(axis=1)[:, None] + squared[None, :] - 2 * block @ pool.T
        distance[start : start + len(block)] = np.sqrt(np.maximum(np.partition(d2, k, axis=1)[:, k], 0.0))
    return distance


def ranks(values: np.ndarray) -> np.ndarray:
    """Each value's rank among ``values`` in (0, 1], equal values sharing their mean rank."""
    if not len(values):
        return np.zeros(0)
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    first = np.cumsum(counts) - counts  # 0-based rank of each distinct value's first occurrence
    mean = first + (counts + 1) / 2
    return mean[inverse] / len(values)


def k_centre(queue: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Greedy k-centre: each queued vector's distance to the nearest reference or earlier pick.

    With no reference the first pick is the queued vector farthest from the queue's mean.
    """
    count = len(queue)
    priorities = np.zeros(count)
    if count == 0:
        return priorities
    if len(reference):
        nearest = np.min(np.linalg.norm(queue[:, None, :] - reference[None, :, :], axis=2), axis=1)
    else:
        nearest = np.linalg.norm(queue - queue.mean(axis=0), axis=1)
    picked = np.zeros(count, bool)
    for _ in range(count):
        candidates = np.where(picked, -np.inf, nearest)
        index = int(np.argmax(candidates))
        priorities[index] = nearest[index]
        picked[index] = True
        nearest = np.minimum(nearest, np.linalg.norm(queue - queue[index], axis=1))
    return priorities


def select(
    candidates: Sequence[Candidate],
    budget: int,
    criteria: Criteria = Criteria(),
    *,
    labelled: Mapping[str, int] | None = None,
    categories: Sequence[str] = (),
    reference: np.ndarray | None = None,
    reference_patches: np.ndarray | None = None,
) -> list[Pick]:
    """Up to ``budget`` candidates in the order to label them (see the module).

    ``labelled``: objects per category already labelled (for the rare boost), over ``categories``.
    ``reference``: embeddings of labelled images: the diversity stage discounts candidates close to them.
    ``reference_patches``: labelled images' cells, one per row: novelty discounts what looks like them.
    Candidates need an embedding when ``criteria.diversity`` is on, patches when ``criteria.novelty``
    is. Ties keep the candidates' order.
    """
    if budget < 0:
        raise ValueError(f"the budget must not be negative, got {budget}")
    weights = category_weights(labelled or {}, categories) if criteria.rare_boost else None
    scores = np.array([uncertainty(c.detections, criteria.ranker, criteria.reducer, weights) for c in candidates])
    value = scores
    if criteria.novelty and len(candidates):
        cells = []
        for c in candidates:
            if c.patches is None:
                raise ValueError(f"candidate {c.key} has no patches; novelty needs them per candidate")
            cells.append(c.patches)
        value = (ranks(scores) + ranks(novelty(cells, reference_patches))) / 2
    if not criteria.diversity:
        chosen = sorted(range(len(candidates)), key=lambda i: -value[i])[:budget]  # stable on ties
    else:
        chosen = _diverse(candidates, value, budget, reference)
    count = max(len(chosen), 1)
    return [Pick(candidates[i].key, float(scores[i]), (count - rank) / count) for rank, i in enumerate(chosen)]


def _diverse(
    candidates: Sequence[Candidate], scores: np.ndarray, budget: int, reference: np.ndarray | None
) -> list[int]:
    """Greedy: each time the candidate of highest value x distance, where distance is its distance
    to the nearest picked or labelled image over the median distance between two candidates, at most 1.

    The median over all pairs, not over nearest neighbours: on a robot's stream most candidates have
    a near copy, and a scale taken from those would call every near copy novel."""
    if not len(candidates) or budget == 0:
        return []
    vectors = []
    for c in candidates:
        if c.embedding is None:
            raise ValueError(f"candidate {c.key} has no embedding; diversity needs one per candidate")
        vectors.append(c.embedding)
    points = np.stack(vectors)
    nearest = np.full(len(points), np.inf)
    if reference is not None and len(reference):
        for start in range(0, len(reference), 512):  # bounded memory whatever the labelled set's size
            block = reference[start : start + 512]
            nearest = np.minimum(nearest, np.linalg.norm(points[:, None, :] - block[None, :, :], axis=2).min(axis=1))
    scale = max(_spread(points), 1e-9)
    taken = np.zeros(len(points), bool)
    picks: list[int] = []
    while len(picks) < min(budget, len(points)):
        value = scores * np.minimum(1.0, nearest / scale)
        value[taken] = -np.inf
        index = int(np.argmax(value))  # the first of equals: ties keep the candidates' order
        picks.append(index)
        taken[index] = True
        nearest = np.minimum(nearest, np.linalg.norm(points - points[index], axis=1))
    return picks


def _spread(points: np.ndarray, sample: int = 256) -> float:
    """The median distance between two different points (over a sample of up to ``sample`` of them)."""
    if len(points) < 2:
        return 1.0
    chosen = points[np.linspace(0, len(points) - 1, min(sample, len(points))).astype(int)]
    distances = np.linalg.norm(chosen[:, None, :] - chosen[None, :, :], axis=2)
    pairs = distances[np.triu_indices(len(chosen), k=1)]
    return float(np.median(pairs)) if len(pairs) else 1.0
