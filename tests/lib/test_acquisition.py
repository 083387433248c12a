"""The acquisition function behind a label budget, on hand-made candidates with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from visionloop.annotator.v1 import annotator_service_pb2 as pb
from visionloop.common.v1 import detection_pb2, geometry_pb2
from visionloop.lib import acquisition
from visionloop.lib.acquisition import Candidate, Criteria

CATEGORIES = ("weed", "crop", "thistle")
UNCERTAINTY_ONLY = Criteria(reducer=pb.REDUCER_SUM, rare_boost=False, diversity=False)


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
    picks = acquisition.select([cluttered, unsure], 1, Criteria())
    assert [p.key for p in picks] == ["unsure"]
    summed = acquisition.select([cluttered, unsure], 1, Criteria(reducer=pb.REDUCER_SUM))
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
    boosted = Criteria(reducer=pb.REDUCER_SUM, rare_boost=True, diversity=False)
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

    diverse = Criteria(reducer=pb.REDUCER_SUM, rare_boost=False, diversity=True)
    picks = acquisition.select(candidates, 3, diverse)
    assert [p.key for p in picks] == ["copy-0", "elsewhere", "far"]
    assert [p.priority for p in picks] == pytest.approx([1.0, 2 / 3, 1 / 3])  # labelled in pick order


def test_diversity_keeps_away_from_what_is_labelled_already() -> None:
    unsure = _found(("weed", 0.5, 0))
    candidates = [_candidate("seen", unsure, (0.0, 0.0)), _candidate("new", _found(("weed", 0.6, 0)), (3.0, 3.0))]
    reference = np.array([[0.0, 0.01], [10.0, 10.0]])  # a labelled frame right beside "seen"
    picks = acquisition.select(candidates, 1, Criteria(rare_boost=False), reference=reference)
    assert [p.key for p in picks] == ["new"]


@pytest.mark.parametrize("criteria", [UNCERTAINTY_ONLY, Criteria()])
@pytest.mark.parametrize("budget", [0, 1, 4, 50])
def test_the_budget_is_never_exceeded_and_no_image_is_picked_twice(criteria: Criteria, budget: int) -> None:
    rng = np.random.default_rng(7)
    candidates = [
        _candidate(str(k), _found(("weed", float(rng.uniform(0.3, 0.9)), 0)), tuple(rng.normal(size=4)))
        for k in range(12)
    ]
    picks = acquisition.select(candidates, budget, criteria, labelled={"weed": 5}, categories=CATEGORIES)
    assert len(picks) == min(budget, len(candidates))
    assert len({p.key for p in picks}) == len(picks)
    assert all(0 < p.priority <= 1 for p in picks)


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="budget"):
        acquisition.select([], -1)
    with pytest.raises(ValueError, match="no embedding"):
        acquisition.select([_candidate("bare", _found(("weed", 0.5, 0)))], 1, Criteria())


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
