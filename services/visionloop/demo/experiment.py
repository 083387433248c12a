"""What does active learning buy? Ways of spending one label budget, compared over several seeds.

Per seed every arm starts from one model, trained on the bootstrap frames. In every later round
the robots' frames of that round (the same frames for every arm) are offered, and each arm labels
``budget`` x (frames the robots saw) of them, for every budget of the run:

- ``random``: frames drawn uniformly from everything the robots saw (the baseline): ``draws``
  independent draws per seed and budget (each its own model), their scores averaged, since one
  draw's luck (a handful of thistle frames more or fewer) moves mAP@0.5 by several points;
- ``filter``: the edge filter alone: the frames the detector's ``UploadFilter`` uploads (the arm's
  own model on the robots' frames in camera order and at camera time, one filter for the whole
  run, as one detector keeps one), the first ones that arrive;
- ``uncertainty``: from those same uploads, the most uncertain (least confidence, highest object);
- ``acquisition``: from those uploads, ``lib.acquisition.select`` with its defaults (what
  SelectImages' ``ACQUISITION_BALANCED`` does): the same least confidence of an image's most
  uncertain object, rare categories boosted, mixed with the novelty of the image's look, picked
  greedily away from what is labelled and picked (diversity);
- ``oracle`` (on demand, an upper bound rather than a way of picking): from all the robots' frames,
  those its current model gets most wrong, by its training loss on their ground truth, spread along
  the drives (``spaced``: no two within ``ORACLE_GAP`` frames of one drive while the budget allows).
  No loop knows those labels before it buys them: what it scores says how much choosing frames can
  buy on this field with this trainer.

Where the filter uploads fewer frames than the budget, the arms that choose from its uploads
label them all (and so fewer frames than ``random``). Each arm's picks are annotated from ground
truth and its model trains on everything it picked so far, continuing from its previous model,
as the demo's trainer does; every round's model is scored on the held-out frames (mAP@0.5, AP@0.5
per category and mAP@0.5 per situation the frames show). Camera time is simulated: nothing waits
on a wall clock. This runs in-process, without the services: the same ``TrainingRun``, filter,
decoding and acquisition, without the gRPC stack around them.
"""

from __future__ import annotations

import random
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from visionloop.annotator.v1 import annotator_service_pb2 as ranking_pb2
from visionloop.common.v1 import detection_pb2, geometry_pb2
from visionloop.demo.config import (
    ACQUISITION_SCORE_THRESHOLD,
    ARMS,
    BUDGETS,
    DETECTOR_SCORE_THRESHOLD,
    EVALUATION_SCORE_THRESHOLD,
    EXPERIMENT_ARMS,
    ORACLE,
    LoopConfig,
)
from visionloop.demo.scenes import Frame
from visionloop.detector.v1 import detector_service_pb2
from visionloop.lib import acquisition
from visionloop.lib.centernet.model import CenterNet
from visionloop.lib.evaluation import Prediction, Truth, evaluate
from visionloop.lib.training_data import Sample
from visionloop.server.detector.upload_filter import UploadFilter
from visionloop.server.trainer.reference.predict import predict, truths
from visionloop.server.trainer.reference.train import TrainingRun, input_size, sample_losses

RANDOM, FILTER, UNCERTAINTY, ACQUISITION = ARMS
UNCERTAINTY_ONLY = acquisition.Criteria(
    ranker=ranking_pb2.RANKER_LEAST_CONFIDENCE,
    reducer=ranking_pb2.REDUCER_MAX,
    rare_boost=False,
    diversity=False,
    novelty=False,
)
ARM_CRITERIA = {UNCERTAINTY: UNCERTAINTY_ONLY, ACQUISITION: acquisition.Criteria()}
# The oracle's picks of one drive are at least this many frames apart (96 pixels of ground, half a
# frame): the frames a model gets most wrong come in runs, one thing seen as it passes under the camera.
ORACLE_GAP = 12

Step = Callable[[str], None]  # called after every training with what it was
Offer = tuple[float, str, Frame]  # camera time, camera id, frame


@dataclass(frozen=True)
class Scores:
    """A model on the held-out frames."""

    map50: float
    categories: dict[str, float]  # AP@0.5 per category
    situations: dict[str, float]  # mAP@0.5 on the held-out frames that show each situation


@dataclass(frozen=True)
class ArmRound:
    """One round of one arm at one budget."""

    picked: int  # frames annotated in this round
    candidates: int  # frames it chose from: the robots' for random, the filter's uploads otherwise
    objects: int  # ground-truth objects on the picked frames
    images: int  # frames trained on so far
    scores: Scores  # of the model trained in this round
    situations: dict[str, float] = field(default_factory=dict)  # picked frames showing each situation
    selection_seconds: float = 0.0  # choosing the picks, detection excluded (the detector runs anyway)

    @property
    def map50(self) -> float:
        return self.scores.map50


@dataclass(frozen=True)
class SeedResult:
    seed: int
    # budget label ("10%") -> arm -> rounds; round 1 (bootstrap) is the same everywhere
    runs: dict[str, dict[str, tuple[ArmRound, ...]]]


def budget_label(budget: float) -> str:
    return f"{budget * 100:g}%"


@dataclass(frozen=True)
class Comparison:
    config: LoopConfig
    seeds: tuple[SeedResult, ...]
    arms: tuple[str, ...] = ARMS
    budgets: tuple[float, ...] = BUDGETS
    draws: int = 1  # random's draws per seed and budget, averaged

    def rounds(self, budget: float, arm: str) -> list[tuple[ArmRound, ...]]:
        """Per seed, every round of ``arm`` at ``budget``."""
        return [s.runs[budget_label(budget)][arm] for s in self.seeds]

    def maps(self, budget: float, arm: str, round_: int) -> list[float]:
        """mAP@0.5 of ``arm`` at ``budget`` after round ``round_`` (1-based), one per seed."""
        return [r[round_ - 1].map50 for r in self.rounds(budget, arm)]

    def gains(self, budget: float, arm: str, round_: int | None = None) -> list[float]:
        """Per seed: mAP of ``arm`` minus that of random picks after ``round_`` (default: the last)."""
        round_ = round_ or self.config.rounds
        return [a - r for a, r in zip(self.maps(budget, arm, round_), self.maps(budget, RANDOM, round_), strict=True)]


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def detections(found: Sequence[Prediction], threshold: float = 0.0) -> detection_pb2.Detections:
    """What the detector would answer at ``threshold`` (categories by name, as the filter keys them)."""
    answer = detection_pb2.Detections()
    for p in found:
        if p.score < threshold:
            continue
        if p.point is not None:
            answer.points.add(
                category_name=p.category, confidence=p.score, point=geometry_pb2.Point(x=p.point[0], y=p.point[1])
            )
        elif p.box is not None:
            x, y, w, h = p.box
            answer.boxes.add(
                category_name=p.category, confidence=p.score, box=geometry_pb2.Box(x=x, y=y, width=w, height=h)
            )
    return answer


class Bench:
    """One seed: frames, the held-out set, training and scoring, shared by every arm."""

    def __init__(self, config: LoopConfig, workdir: Path, step: Step = lambda _: None) -> None:
        self.config = config
        self.scenes = config.scenes()
        self.categories = list(self.scenes.categories)
        self.names = [name for name, _ in self.categories]
        self.workdir = workdir
        self.step = step
        held_out = self.scenes.held_out(config.held_out)
        self.held_out_images = [f.decoded() for f in held_out]
        self.held_out_truths = [truths(f.annotations) for f in held_out]
        self.held_out_situations = [f.situations for f in held_out]
        width, height = config.size
        self.size = input_size(config.resolution, width, height)
        self.trainings = 0

    def train(self, samples: Sequence[Sample], base: CenterNet | None, what: str) -> tuple[CenterNet, Scores]:
        self.trainings += 1
        folder = self.workdir / f"training-{self.trainings}"
        base_state = base.state_dict() if base is not None else None
        hyper = self.config.hyperparameters(len(samples), continued=base is not None)
        run = TrainingRun(samples, self.names, hyper, folder, base_state=base_state)
        run.run()
        model = run.best_model()
        assert model is not None  # every epoch ran: the last one is the best without an evaluator
        scores = self.score(model)
        self.step(f"seed {self.config.seed} {what}: mAP@0.5 {scores.map50:.3f}")
        return model, scores

    def score(self, model: CenterNet) -> Scores:
        found = predict(model, self.held_out_images, self.categories, self.size, EVALUATION_SCORE_THRESHOLD)
        overall = evaluate(self.held_out_truths, found, self.names)
        by_situation = {}
        for situation in sorted(set().union(*self.held_out_situations)):
            chosen = [i for i, shown in enumerate(self.held_out_situations) if situation in shown]
            subset: tuple[list[list[Truth]], list[list[Prediction]]] = (
                [self.held_out_truths[i] for i in chosen],
                [found[i] for i in chosen],
            )
            by_situation[situation] = evaluate(*subset, self.names).map50
        categories = {name: result.ap50 for name, result in overall.classes.items()}
        return Scores(overall.map50, categories, by_situation)

    def stream(self, round_: int) -> list[Offer]:
        """This round's frames as (camera time, camera id, frame), in the order the filter sees them."""
        config = self.config
        start = (round_ - 1) * (config.frames / config.fps + config.round_gap)  # as the demo's robots come back
        offers = [
            (start + index / config.fps, f"robot-{robot}", frame)
            for robot in range(config.robots)
            for index, frame in enumerate(self.scenes.robot(robot, round_, config.frames))
        ]
        return sorted(offers, key=lambda offer: (offer[0], offer[1]))

    def detect(self, model: CenterNet, images: Sequence[np.ndarray]) -> list[list[Prediction]]:
        """The model's detections down to the acquisition's threshold (the robots get those above theirs)."""
        return predict(model, images, self.categories, self.size, ACQUISITION_SCORE_THRESHOLD)


@dataclass
class _Arm:
    """One arm at one budget: its model, what it labelled, and its own detector's upload filter."""

    name: str
    model: CenterNet
    trained: list[Sample]
    chooser: UploadFilter | None  # the arm's detector's upload filter; None for random and the oracle
    picker: random.Random | None  # random's draws; None for the others
    rounds: list[ArmRound]
    labelled: Counter[str] = field(default_factory=Counter)  # objects per category
    embeddings: list[np.ndarray] = field(default_factory=list)  # of the labelled frames
    patches: list[np.ndarray] = field(default_factory=list)  # the labelled frames' cells (novelty)


def _filtered(found: Sequence[Sequence[Prediction]], offers: Sequence[Offer], chooser: UploadFilter) -> list[int]:
    """Indices of the offers the upload filter sends to the hub, in camera order."""
    mode = detector_service_pb2.AUTO_UPLOAD_FILTERED
    return [
        i
        for i, ((now, camera, _), predictions) in enumerate(zip(offers, found, strict=True))
        if chooser.decide(camera, detections(predictions, DETECTOR_SCORE_THRESHOLD), mode, now)
    ]


@dataclass(frozen=True)
class _Choice:
    picks: list[int]  # indices into the round's offers
    candidates: int  # what the arm chose from
    seconds: float = 0.0  # choosing took (detection excluded)
    embeddings: list[np.ndarray] = field(default_factory=list)  # of the picks, for the arm's diversity
    patches: list[np.ndarray] = field(default_factory=list)  # of the picks, for the arm's novelty


def spaced(scores: Sequence[float], offers: Sequence[Offer], budget: int, gap: int, fps: float) -> list[int]:
    """``budget`` offers by score, highest first, skipping any within ``gap`` frames of one picked from the
    same camera while others are left; where that leaves the budget unspent, the highest of those skipped
    fill it. Returned in camera order."""
    picks: list[int] = []
    skipped: list[int] = []
    taken: dict[str, list[float]] = {}
    for i in sorted(range(len(offers)), key=lambda i: -scores[i]):
        if len(picks) == budget:
            break
        now, camera, _ = offers[i]
        if any(round(abs(now - then) * fps) < gap for then in taken.get(camera, [])):  # in whole frames
            skipped.append(i)
            continue
        picks.append(i)
        taken.setdefault(camera, []).append(now)
    return sorted(picks + skipped[: budget - len(picks)])


def _choose(arm: _Arm, budget: int, offers: Sequence[Offer], images: Sequence[np.ndarray], run: Bench) -> _Choice:
    """The arm's picks this round and what it chose them from."""
    if arm.picker is not None:
        return _Choice(sorted(arm.picker.sample(range(len(offers)), min(budget, len(offers)))), len(offers))
    if arm.name == ORACLE:
        started = time.perf_counter()
        samples = [Sample(image, frame.annotations, 0) for image, (_, _, frame) in zip(images, offers, strict=True)]
        losses = sample_losses(arm.model, samples, run.names, run.size)
        worst = spaced(losses.tolist(), offers, budget, ORACLE_GAP, run.config.fps)
        return _Choice(worst, len(offers), time.perf_counter() - started)
    assert arm.chooser is not None
    found = run.detect(arm.model, images)
    uploads = _filtered(found, offers, arm.chooser)
    if arm.name == FILTER:
        return _Choice(uploads[:budget], len(uploads))
    criteria = ARM_CRITERIA[arm.name]
    started = time.perf_counter()
    candidates = [
        acquisition.Candidate(
            str(i),
            answer := detections(found[i]),
            acquisition.embedding(images[i], answer, run.names) if criteria.diversity else None,
            acquisition.patches(images[i]) if criteria.novelty else None,
        )
        for i in uploads
    ]
    reference = np.stack(arm.embeddings) if arm.embeddings and criteria.diversity else None
    reference_patches = np.concatenate(arm.patches) if arm.patches and criteria.novelty else None
    picks = acquisition.select(
        candidates,
        budget,
        criteria,
        labelled=arm.labelled,
        categories=run.names,
        reference=reference,
        reference_patches=reference_patches,
    )
    seconds = time.perf_counter() - started
    by_key = {c.key: c for c in candidates}
    return _Choice(
        [int(p.key) for p in picks],
        len(uploads),
        seconds,
        [v for p in picks if (v := by_key[p.key].embedding) is not None],
        [v for p in picks if (v := by_key[p.key].patches) is not None],
    )


def _objects(samples: Sequence[Sample]) -> Counter[str]:
    return Counter(a.category for s in samples for a in s.annotations)


def _draws(arm: str, draws: int) -> int:
    """How many times ``arm`` runs per seed and budget: random ``draws`` times, the others once."""
    return draws if arm == RANDOM else 1


def _mean_round(rounds: Sequence[ArmRound]) -> ArmRound:
    """Random's draws of one round as one: scores and counts averaged."""
    if len(rounds) == 1:
        return rounds[0]

    def mean(values: Sequence[Mapping[str, float]]) -> dict[str, float]:
        keys = dict.fromkeys(key for v in values for key in v)  # in order: the tables keep theirs
        return {key: statistics.fmean(v.get(key, 0.0) for v in values) for key in keys}

    scores = [r.scores for r in rounds]
    return ArmRound(
        rounds[0].picked,
        rounds[0].candidates,
        round(statistics.fmean(r.objects for r in rounds)),
        rounds[0].images,
        Scores(
            statistics.fmean(s.map50 for s in scores),
            mean([s.categories for s in scores]),
            mean([s.situations for s in scores]),
        ),
        mean([r.situations for r in rounds]),
    )


def run_seed(
    config: LoopConfig,
    workdir: Path,
    step: Step = lambda _: None,
    arms: Sequence[str] = ARMS,
    budgets: Sequence[float] = BUDGETS,
    draws: int = 1,
) -> SeedResult:
    """Every arm at every budget for ``config.seed`` (random ``draws`` times); returns every round's numbers."""
    run = Bench(config, workdir, step)
    bootstrap_frames = run.scenes.bootstrap(config.bootstrap)
    bootstrap = [f.sample() for f in bootstrap_frames]
    model, scores = run.train(bootstrap, None, "bootstrap")
    first = ArmRound(
        len(bootstrap),
        len(bootstrap),
        sum(len(s.annotations) for s in bootstrap),
        len(bootstrap),
        scores,
        dict(Counter(s for f in bootstrap_frames for s in f.situations)),
    )
    start_embeddings = [
        acquisition.embedding(s.image, detections(found), run.names)
        for s, found in zip(bootstrap, run.detect(model, [s.image for s in bootstrap]), strict=True)
    ]
    start_patches = [acquisition.patches(s.image) for s in bootstrap]
    # Random's draws are seeded by seed, budget and draw: the same whichever other budgets and arms run.
    states = {
        (budget, name, draw): _Arm(
            name,
            model,
            list(bootstrap),
            None if name in (RANDOM, ORACLE) else UploadFilter(config.upload_filter, random.Random(config.seed)),
            random.Random(f"{config.seed}/{budget_label(budget)}/{draw}") if name == RANDOM else None,
            [first],
            _objects(bootstrap),
            list(start_embeddings),
            list(start_patches),
        )
        for budget in budgets
        for name in arms
        for draw in range(_draws(name, draws))
    }
    for round_ in range(2, config.rounds + 1):
        offers = run.stream(round_)
        images = [frame.decoded() for _, _, frame in offers]
        for budget in budgets:
            count = round(budget * len(offers))
            for (arm_budget, name, draw), arm in states.items():
                if arm_budget != budget:
                    continue
                choice = _choose(arm, count, offers, images, run)
                picks = choice.picks
                chosen = [offers[i][2].sample() for i in picks]
                arm.trained += chosen
                arm.labelled += _objects(chosen)
                arm.embeddings += choice.embeddings
                arm.patches += choice.patches
                what = f"round {round_} {budget_label(budget)} {name}" + (f" draw {draw + 1}" if draws > 1 else "")
                if chosen:
                    arm.model, scores = run.train(arm.trained, arm.model, what)
                else:
                    scores = arm.rounds[-1].scores
                situations = Counter(s for i in picks for s in offers[i][2].situations)
                objects = sum(len(s.annotations) for s in chosen)
                arm.rounds.append(
                    ArmRound(
                        len(chosen),
                        choice.candidates,
                        objects,
                        len(arm.trained),
                        scores,
                        {s: float(n) for s, n in situations.items()},
                        choice.seconds,
                    )
                )
    runs = {}
    for budget in budgets:
        by_arm = {}
        for name in arms:
            drawn = [states[(budget, name, d)].rounds for d in range(_draws(name, draws))]
            by_arm[name] = tuple(_mean_round(each) for each in zip(*drawn, strict=True))
        runs[budget_label(budget)] = by_arm
    return SeedResult(config.seed, runs)


def trainings(
    config: LoopConfig, seeds: int, arms: int = len(ARMS), budgets: int = len(BUDGETS), draws: int = 1
) -> int:
    """How many trainings ``run_experiment`` runs (for a progress bar)."""
    return seeds * (1 + budgets * (arms - 1 + draws) * (config.rounds - 1))


def run_experiment(
    config: LoopConfig,
    seeds: Sequence[int],
    step: Step = lambda _: None,
    workdir: Path | None = None,
    arms: Sequence[str] = ARMS,
    budgets: Sequence[float] = BUDGETS,
    draws: int = 1,
) -> Comparison:
    """Every arm at every budget for each seed of ``seeds`` (``config.seed`` is replaced by each), random
    ``draws`` times (its scores averaged)."""
    if len(seeds) < 1:
        raise ValueError("name at least one seed")
    if config.rounds < 2:
        raise ValueError("the experiment needs at least 2 rounds: the bootstrap and one chosen round")
    if RANDOM not in arms:
        raise ValueError("the arms must include random: every other arm is compared with it")
    unknown = set(arms) - set(EXPERIMENT_ARMS)
    if unknown:
        raise ValueError(f"unknown arms {sorted(unknown)}; use {', '.join(EXPERIMENT_ARMS)}")
    if not budgets or not all(0 < b <= 1 for b in budgets):
        raise ValueError("budgets are shares of the robots' frames, each in (0, 1]")
    if draws < 1:
        raise ValueError(f"random needs at least one draw, got {draws}")
    results = []
    with tempfile.TemporaryDirectory(prefix="visionloop-experiment-", dir=workdir) as folder:
        for seed in seeds:
            seed_config = replace(config, seed=seed)
            results.append(run_seed(seed_config, Path(folder) / f"seed-{seed}", step, arms, budgets, draws))
    return Comparison(config, tuple(results), tuple(arms), tuple(budgets), draws)
