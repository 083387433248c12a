"""Does the upload filter earn its name? Its picks against as many random frames, over several seeds.

Per seed both arms start from one model, trained on the bootstrap frames. In every later round the
robots' frames of that round (the same frames for both arms) are

- active learning: run through the arm's current model with the detector's decoding and default
  score threshold, and offered in camera order and at camera time to the detector's own
  ``UploadFilter`` (one filter for the whole run, as one detector keeps one);
- random: as many frames as the filter picked in that round, drawn uniformly from the same frames.

Each arm's picks are annotated from ground truth and its model trains on everything it picked so
far, continuing from its previous model, as the demo's trainer does; every round's model is
scored on the held-out frames (mAP@0.5). This runs in-process, without the services: the same
``TrainingRun``, filter and decoding, without the gRPC stack around them.
"""

from __future__ import annotations

import random
import statistics
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from visionloop.common.v1 import detection_pb2, geometry_pb2
from visionloop.demo.config import DETECTOR_SCORE_THRESHOLD, EVALUATION_SCORE_THRESHOLD, LoopConfig
from visionloop.demo.scenes import Frame, Scenes
from visionloop.detector.v1 import detector_service_pb2
from visionloop.lib.centernet.model import CenterNet
from visionloop.lib.evaluation import Prediction, evaluate
from visionloop.server.detector.upload_filter import UploadFilter
from visionloop.server.trainer.reference.predict import predict, truths
from visionloop.server.trainer.reference.train import TrainingRun, input_size
from visionloop.testing.synthetic.world import Sample

ARMS = ("active", "random")
# Optional third arm: as many frames, those with the most detections in the uncertainty band (a
# ranking the filter does not do: it takes any frame with one such detection, first come first served).
RANKED = "ranked"

Step = Callable[[str], None]  # called after every training with what it was
Offer = tuple[float, str, Frame]  # camera time, camera id, frame


@dataclass(frozen=True)
class ArmRound:
    """One round of one arm."""

    picked: int  # frames annotated in this round
    objects: int  # ground-truth objects on them
    images: int  # frames trained on so far
    map50: float  # of the model trained in this round, on the held-out frames


@dataclass(frozen=True)
class SeedResult:
    seed: int
    arms: dict[str, tuple[ArmRound, ...]]  # arm -> rounds; round 1 (bootstrap) is shared


@dataclass(frozen=True)
class Comparison:
    config: LoopConfig
    seeds: tuple[SeedResult, ...]
    arms: tuple[str, ...] = ARMS

    def maps(self, arm: str, round_: int) -> list[float]:
        """mAP@0.5 of ``arm`` after round ``round_`` (1-based), one per seed."""
        return [s.arms[arm][round_ - 1].map50 for s in self.seeds]

    def gains(self, arm: str = "active") -> list[float]:
        """Per seed: final mAP of ``arm`` minus that of random picks."""
        rounds = self.config.rounds
        return [a - r for a, r in zip(self.maps(arm, rounds), self.maps("random", rounds), strict=True)]


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def _detections(found: Sequence[Prediction]) -> detection_pb2.Detections:
    """What the detector would answer, for the filter (categories by name, as it keys them)."""
    detections = detection_pb2.Detections()
    for p in found:
        if p.point is not None:
            detections.points.add(
                category_name=p.category, confidence=p.score, point=geometry_pb2.Point(x=p.point[0], y=p.point[1])
            )
        elif p.box is not None:
            x, y, w, h = p.box
            box = geometry_pb2.Box(x=x, y=y, width=w, height=h)
            detections.boxes.add(category_name=p.category, confidence=p.score, box=box)
    return detections


def ranked(found: Sequence[Sequence[Prediction]], count: int, band: tuple[float, float]) -> list[int]:
    """Indices (ascending) of the ``count`` frames with the most detections in ``band``; earlier first on ties."""
    low, high = band
    uncertain = [sum(low <= p.score <= high for p in predictions) for predictions in found]
    return sorted(sorted(range(len(found)), key=lambda i: -uncertain[i])[:count])


class _Run:
    """One seed: frames, the held-out set and training, shared by both arms."""

    def __init__(self, config: LoopConfig, workdir: Path, step: Step) -> None:
        self.config = config
        self.scenes: Scenes = config.scenes()
        self.categories = list(self.scenes.categories)
        self.names = [name for name, _ in self.categories]
        self.workdir = workdir
        self.step = step
        held_out = [f.sample() for f in self.scenes.held_out(config.held_out)]
        self.held_out_images = [s.image for s in held_out]
        self.held_out_truths = [truths(s.annotations) for s in held_out]
        w, h = self.scenes.config.width, self.scenes.config.height
        self.size = input_size(config.resolution, w, h)
        self.trainings = 0

    def train(self, samples: Sequence[Sample], base: CenterNet | None, what: str) -> tuple[CenterNet, float]:
        self.trainings += 1
        folder = self.workdir / f"training-{self.trainings}"
        base_state = base.state_dict() if base is not None else None
        hyper = self.config.hyperparameters(len(samples), continued=base is not None)
        run = TrainingRun(samples, self.names, hyper, folder, base_state=base_state)
        run.run()
        model = run.best_model()
        assert model is not None  # every epoch ran: the last one is the best without an evaluator
        found = predict(model, self.held_out_images, self.categories, self.size, EVALUATION_SCORE_THRESHOLD)
        score = evaluate(self.held_out_truths, found, self.names).map50
        self.step(f"seed {self.config.seed} {what}: mAP@0.5 {score:.3f}")
        return model, score

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
        """What the detector answers robots: the served model's detections at its default threshold."""
        return predict(model, images, self.categories, self.size, DETECTOR_SCORE_THRESHOLD)

    def filtered(
        self, found: Sequence[Sequence[Prediction]], offers: Sequence[Offer], chooser: UploadFilter
    ) -> list[int]:
        """Indices of the offers the upload filter sends to the hub."""
        mode = detector_service_pb2.AUTO_UPLOAD_FILTERED
        return [
            i
            for i, ((now, camera, _), predictions) in enumerate(zip(offers, found, strict=True))
            if chooser.decide(camera, _detections(predictions), mode, now)
        ]


def run_seed(config: LoopConfig, workdir: Path, step: Step = lambda _: None, arms: Sequence[str] = ARMS) -> SeedResult:
    """The ``arms`` (``ARMS``, and optionally ``RANKED``) for ``config.seed``; returns every round's numbers."""
    run = _Run(config, workdir, step)
    bootstrap = [f.sample() for f in run.scenes.bootstrap(config.bootstrap)]
    model, score = run.train(bootstrap, None, "bootstrap")
    first = ArmRound(len(bootstrap), sum(len(s.annotations) for s in bootstrap), len(bootstrap), score)
    rounds: dict[str, list[ArmRound]] = {arm: [first] for arm in arms}
    models = dict.fromkeys(arms, model)
    scores = dict.fromkeys(arms, score)
    trained: dict[str, list[Sample]] = {arm: list(bootstrap) for arm in arms}
    chooser = UploadFilter(config.upload, random.Random(config.seed))
    picker = random.Random(config.seed)
    for round_ in range(2, config.rounds + 1):
        offers = run.stream(round_)
        images = [frame.decoded() for _, _, frame in offers]
        active = run.filtered(run.detect(models["active"], images), offers, chooser)
        picks = {"active": active, "random": sorted(picker.sample(range(len(offers)), len(active)))}
        if RANKED in arms:
            band = (config.upload.min_uncertain, config.upload.max_uncertain)
            picks[RANKED] = ranked(run.detect(models[RANKED], images), len(active), band)
        for arm in arms:
            chosen = [offers[i][2].sample() for i in picks[arm]]
            trained[arm] += chosen
            if chosen:
                models[arm], scores[arm] = run.train(trained[arm], models[arm], f"round {round_} {arm}")
            objects = sum(len(s.annotations) for s in chosen)
            rounds[arm].append(ArmRound(len(chosen), objects, len(trained[arm]), scores[arm]))
    return SeedResult(config.seed, {arm: tuple(r) for arm, r in rounds.items()})


def trainings(config: LoopConfig, seeds: int, arms: int = len(ARMS)) -> int:
    """How many trainings ``run_experiment`` runs (for a progress bar)."""
    return seeds * (1 + arms * (config.rounds - 1))


def run_experiment(
    config: LoopConfig,
    seeds: Sequence[int],
    step: Step = lambda _: None,
    workdir: Path | None = None,
    arms: Sequence[str] = ARMS,
) -> Comparison:
    """The ``arms`` for every seed of ``seeds`` (``config.seed`` is replaced by each)."""
    if len(seeds) < 1:
        raise ValueError("name at least one seed")
    if config.rounds < 2:
        raise ValueError("the experiment needs at least 2 rounds: the bootstrap and one filtered round")
    results = []
    with tempfile.TemporaryDirectory(prefix="visionloop-experiment-", dir=workdir) as folder:
        for seed in seeds:
            results.append(run_seed(replace(config, seed=seed), Path(folder) / f"seed-{seed}", step, arms))
    return Comparison(config, tuple(results), tuple(arms))
