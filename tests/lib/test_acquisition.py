"""The acquisition function behind a label budget, on hand-made candidates with known answers."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from visionloop.annotator.v1 import annotator_service_pb2 as pb
from visionloop.common.v1 import detection_pb2, geometry_pb2
from visionloop.lib import acquisition
from visionloop.lib.acquisition import Candidate, Criteria
from visionloop.testing.synthetic import rows

CATEGORIES = ("weed", "crop", "thistle")
UNCERTAINTY_ONLY = Criteria(reducer=pb.REDUCER_SUM, rare_boost=False, diversity=False, novelty=False)


def _found(*objects: tuple[str, float, float]) -> detection_pb2.Detections:
    """Boxes (category, confidence, x), each on a spot of its own unless x repeats."""
    found = detection_pb2.Detections()
    for category, confidence, x in objects:
        found.boxes.add(
            category_name=category, confidence=confidence, box=geometry_pb2.Box(x=x, y=10, width=30, height=30)
        )
    return found


def _candidate(key: str, found: detection_pb2.Detections, where: tuple[float, ...] = ()) -> Candidate:
    return Candidate(key, found, np.array(where, np.float64) if where else None)


def test_uncertainty_sums_the_objects_of_an_image() -> None:
    one = _found(("weed", 0.6, 0))
    three = _found(("weed", 0.6, 0), ("weed", 0.7, 100), ("crop", 0.8, 200))
    assert acquisition.uncertainty(one, reducer=pb.REDUCER_SUM) == pytest.approx(0.4)
    assert acquisition.uncertainty(three, reducer=pb.REDUCER_SUM) == pytest.approx(0.4 + 0.3 + 0.2)
    assert acquisition.uncertainty(three, reducer=pb.REDUCER_MAX) == pytest.approx(0.4)
    picks = acquisition.select([_candidate("one", one), _candidate("three", three)], 1, UNCERTAINTY_ONLY)
    assert [p.key for p in picks] == ["three"]


def test_by_default_an_image_is_as_uncertain_as_its_most_uncertain_object() -> None:
    # A cluttered frame of fairly sure weeds (a patch: 6 x 0.15) against one really unsure object (0.5):
    # summed, clutter wins; the default (max) labels the unsure one first.
    cluttered = _candidate("patch", _found(*(("weed", 0.85, 60.0 * k) for k in range(6))), (0.0, 0.0))
    unsure = _candidate("unsure", _found(("crop", 0.5, 0)), (5.0, 5.0))
    assert Criteria().reducer == pb.REDUCER_MAX
    picks = acquisition.select([cluttered, unsure], 1, Criteria(novelty=False))
    assert [p.key for p in picks] == ["unsure"]
    summed = acquisition.select([cluttered, unsure], 1, Criteria(reducer=pb.REDUCER_SUM, novelty=False))
    assert [p.key for p in summed] == ["patch"]


def test_categories_labelled_least_weigh_most() -> None:
    weights = acquisition.category_weights({"weed": 300, "crop": 100, "thistle": 2}, CATEGORIES)
    assert weights["weed"] == 1.0  # common: never below 1
    assert weights["thistle"] == pytest.approx(acquisition.RARE_BOOST_MAX)  # sqrt(134 / 3) capped at 4
    assert 1.0 < weights["crop"] < weights["thistle"]
    assert acquisition.category_weights({}, CATEGORIES) == dict.fromkeys(CATEGORIES, 1.0)


def test_the_rare_boost_picks_an_unsure_rare_weed_over_a_more_unsure_common_one() -> None:
    common = _candidate("weed", _found(("weed", 0.5, 0)))  # least confidence 0.5
    rare = _candidate("thistle", _found(("thistle", 0.6, 0)))  # 0.4, but thistles are scarce
    labelled = {"weed": 200, "crop": 200, "thistle": 3}
    boosted = Criteria(reducer=pb.REDUCER_SUM, rare_boost=True, diversity=False, novelty=False)
    plain = acquisition.select([common, rare], 1, UNCERTAINTY_ONLY, labelled=labelled, categories=CATEGORIES)
    rare_first = acquisition.select([common, rare], 1, boosted, labelled=labelled, categories=CATEGORIES)
    assert [p.key for p in plain] == ["weed"]
    assert [p.key for p in rare_first] == ["thistle"]
    assert rare_first[0].uncertainty == pytest.approx(0.4 * acquisition.RARE_BOOST_MAX)


def test_diversity_spends_the_budget_on_different_scenes_not_near_duplicates() -> None:
    # Five near copies of one very unsure scene (a robot's consecutive frames), and two other scenes.
    unsure = _found(("weed", 0.5, 0), ("weed", 0.5, 100))
    copies = [_candidate(f"copy-{k}", unsure, (0.0, 0.01 * k)) for k in range(5)]
    others = [
        _candidate("elsewhere", _found(("weed", 0.6, 0)), (5.0, 0.0)),
        _candidate("far", _found(("crop", 0.7, 0)), (0.0, 5.0)),
    ]
    candidates = [*copies, *others]
    only_uncertainty = acquisition.select(candidates, 3, UNCERTAINTY_ONLY)
    assert [p.key for p in only_uncertainty] == ["copy-0", "copy-1", "copy-2"]  # three labels on one scene

    diverse = Criteria(reducer=pb.REDUCER_SUM, rare_boost=False, diversity=True, novelty=False)
    picks = acquisition.select(candidates, 3, diverse)
    assert [p.key for p in picks] == ["copy-0", "elsewhere", "far"]
    assert [p.priority for p in picks] == pytest.approx([1.0, 2 / 3, 1 / 3])  # labelled in pick order


def test_diversity_keeps_away_from_what_is_labelled_already() -> None:
    unsure = _found(("weed", 0.5, 0))
    candidates = [_candidate("seen", unsure, (0.0, 0.0)), _candidate("new", _found(("weed", 0.6, 0)), (3.0, 3.0))]
    reference = np.array([[0.0, 0.01], [10.0, 10.0]])  # a labelled frame right beside "seen"
    picks = acquisition.select(candidates, 1, Criteria(rare_boost=False, novelty=False), reference=reference)
    assert [p.key for p in picks] == ["new"]


@pytest.mark.parametrize("criteria", [UNCERTAINTY_ONLY, Criteria()])
@pytest.mark.parametrize("budget", [0, 1, 4, 50])
def test_the_budget_is_never_exceeded_and_no_image_is_picked_twice(criteria: Criteria, budget: int) -> None:
    rng = np.random.default_rng(7)
    candidates = [
        _candidate(str(k), _found(("weed", float(rng.uniform(0.3, 0.9)), 0)), tuple(rng.normal(size=4)))
        for k in range(12)
    ]
    for c in candidates:
        c.patches = rng.normal(size=(6, 12)).astype(np.float32)
    picks = acquisition.select(candidates, budget, criteria, labelled={"weed": 5}, categories=CATEGORIES)
    assert len(picks) == min(budget, len(candidates))
    assert len({p.key for p in picks}) == len(picks)
    assert all(0 < p.priority <= 1 for p in picks)


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="budget"):
        acquisition.select([], -1)
    with pytest.raises(ValueError, match="no embedding"):
        acquisition.select([_candidate("bare", _found(("weed", 0.5, 0)))], 1, Criteria(novelty=False))
    with pytest.raises(ValueError, match="no patches"):
        acquisition.select([_candidate("bare", _found(("weed", 0.5, 0)), (0.0,))], 1, Criteria())


def test_the_embedding_puts_a_labelled_image_beside_its_confident_detections() -> None:
    rng = np.random.default_rng(3)
    image = rng.integers(0, 255, (48, 64, 3), np.uint8)
    labelled = _found(("weed", 1.0, 0), ("weed", 1.0, 100))
    detected = _found(("weed", 0.95, 0), ("weed", 0.97, 100), ("crop", 0.05, 200))
    empty = detection_pb2.Detections()
    near = np.linalg.norm(
        acquisition.embedding(image, labelled, CATEGORIES) - acquisition.embedding(image, detected, CATEGORIES)
    )
    far = np.linalg.norm(
        acquisition.embedding(image, labelled, CATEGORIES) - acquisition.embedding(image, empty, CATEGORIES)
    )
    assert near < far / 4


def _ground(rng: np.random.Generator, leaves: int = 4, height: int = 192, width: int = 256) -> np.ndarray:
    """Brown soil with grain and a few green leaves: what most frames of a row look like."""
    image = np.clip(rng.normal((60, 90, 120), 8, (height, width, 3)), 0, 255).astype(np.uint8)
    for _ in range(leaves):
        y, x = int(rng.integers(20, height - 20)), int(rng.integers(20, width - 20))
        cv2.circle(image, (x, y), int(rng.integers(6, 14)), (60, 150, 70), -1)
    return image


def test_novelty_finds_the_frame_holding_what_nothing_else_looks_like() -> None:
    # The model finds nothing anywhere (it was never shown the new thing), so uncertainty is 0 for all
    # twenty frames; one of them holds a small purple flower head.
    rng = np.random.default_rng(5)
    images = [_ground(rng) for _ in range(20)]
    cv2.circle(images[13], (150, 90), 6, (170, 50, 170), -1)
    candidates = [
        Candidate(str(k), detection_pb2.Detections(), acquisition.appearance(image), acquisition.patches(image))
        for k, image in enumerate(images)
    ]
    picks = acquisition.select(candidates, 1, Criteria(), categories=CATEGORIES)
    assert [p.key for p in picks] == ["13"]
    assert picks[0].uncertainty == 0.0  # found for its look, not for anything the model said
    without = acquisition.select(candidates, 1, Criteria(novelty=False), categories=CATEGORIES)
    assert [p.key for p in without] != ["13"]


def test_novelty_fades_once_the_thing_is_labelled() -> None:
    rng = np.random.default_rng(6)
    images = [_ground(rng, leaves=0) for _ in range(12)]
    for image in images[:2]:  # met in two frames of a drive: still novel, a near copy is not its neighbour
        cv2.circle(image, (100, 100), 6, (170, 50, 170), -1)
    cells = [acquisition.patches(image) for image in images]
    alone = acquisition.novelty(cells)
    assert alone[:2].min() > alone[2:].max()
    labelled = np.concatenate([acquisition.patches(image) for image in images[:2]] * 3)  # labelled already
    assert acquisition.novelty(cells, labelled)[:2].max() < alone[:2].min()


def test_patches_do_not_depend_on_the_resolution() -> None:
    image = _ground(np.random.default_rng(7))
    small = acquisition.patches(image)
    large = acquisition.patches(cv2.resize(image, (1024, 768), interpolation=cv2.INTER_NEAREST))
    assert small.shape == large.shape == (12 * 16, 12)
    assert np.abs(small - large).max() < 0.05
    assert acquisition.patches(image[:5, :7]).shape == (1, 12)  # smaller than a cell: one cell


def test_ranks_share_ties() -> None:
    assert acquisition.ranks(np.array([0.0, 0.0, 1.0, 0.5])).tolist() == pytest.approx([0.375, 0.375, 1.0, 0.75])
    assert acquisition.ranks(np.zeros(0)).size == 0


def test_novelty_finds_a_rare_weed_among_a_drive_of_routine_ground() -> None:
    # Frames of a real drive along a row (``synthetic.rows``), and a few of another drive that
    # meets thistles: the most novel frames are thistle frames, though no model has scored one.
    routine = [f for f in rows.drive(3, 1, 40) if f.situations == {rows.ROUTINE}]
    thistles = [f for f in rows.drive(3, 2, 9, force=[rows.THISTLE]) if rows.THISTLE in f.situations]
    assert len(routine) >= 20
    assert len(thistles) >= 3
    frames = routine + thistles
    scores = acquisition.novelty([acquisition.patches(f.sample.image) for f in frames])
    novel, ordinary = scores[len(routine) :], scores[: len(routine)]
    # Most thistle frames above most routine ones (a thistle at the frame's edge hardly shows): 0.91 here.
    assert (novel[:, None] > ordinary[None, :]).mean() >= 0.85


def test_novelty_is_the_kth_nearest_distance_of_the_most_unusual_cell() -> None:
    # Images of few cells (all of them refined): the two passes give the brute-force answer.
    rng = np.random.default_rng(8)
    images = [rng.normal(size=(acquisition.NOVELTY_REFINED, 12)).astype(np.float32) for _ in range(30)]
    reference = rng.normal(size=(50, 12)).astype(np.float32)
    cells = np.concatenate(images)
    bank = np.concatenate([cells, reference])  # both under NOVELTY_SAMPLE: the whole of each
    distances = np.sort(np.linalg.norm(cells[:, None, :] - bank[None, :, :], axis=2), axis=1)
    expected = distances[:, acquisition.NOVELTY_NEIGHBOURS].reshape(30, -1).max(axis=1)
    assert acquisition.novelty(images, reference) == pytest.approx(expected, rel=1e-4)


def test_novelty_of_a_few_candidates_measures_every_cell() -> None:
    # Two frames, one with a small purple flower head: fewer cells than the screening pass samples.
    rng = np.random.default_rng(9)
    images = [_ground(rng, leaves=0) for _ in range(2)]
    cv2.circle(images[1], (200, 150), 6, (170, 50, 170), -1)
    scores = acquisition.novelty([acquisition.patches(image) for image in images])
    assert scores[1] > 2 * scores[0]
