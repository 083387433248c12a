"""The loop, round by round, against the real services.

Before round 1 a validation set goes to the hub, annotated and tagged ``test``: the trainer holds
it out and measures every new model and the deployed one on it, for the hub's promotion gate.
Round 1: there is no model, so the robots upload a few frames with ``Upload`` and all of them are
annotated. Every later round: the robots stream their frames through ``DetectStream``, the
detector's upload filter sends candidates to the hub's inbox, and the annotator's
``SelectImages`` spends the round's label budget on them: the picks join the annotation queue in
the order to label them, and are annotated from ground truth in that order. Then, every round: a
training continues from the deployed model, the converter adds its formats, the detector swaps to
the new version unless the promotion gate held it back, and the held-out frames go through the
detector to score the model it serves. Beside the loop a random baseline labels as many of the
robots' frames at random (``baseline``). The robots' clock is simulated: between rounds the upload
filter's time moves on, nobody waits. One ``RoundRow`` per round.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from google.protobuf import struct_pb2

from visionloop.client.detector import DetectorClient
from visionloop.client.loop import LoopClient
from visionloop.common.v1 import model_pb2, training_pb2
from visionloop.demo import robots
from visionloop.demo.annotate import INBOX, QUEUE, Annotated, GroundTruth, annotate, upload_validation
from visionloop.demo.baseline import RandomBaseline
from visionloop.demo.config import ACQUISITION_SCORE_THRESHOLD, EVALUATION_SCORE_THRESHOLD, LoopConfig
from visionloop.demo.report import Progress
from visionloop.demo.scenes import Frame
from visionloop.demo.stack import Stack, StackConfig
from visionloop.lib.evaluation import evaluate, predictions_from_detections
from visionloop.loop.v1 import training_service_pb2
from visionloop.runtime.logging import get_logger
from visionloop.server.annotator.client import AnnotatorClient
from visionloop.server.converter.config import ConverterSettings
from visionloop.server.trainer.reference.predict import truths
from visionloop.testing.synthetic.seeding import ensure_categories

log = get_logger(__name__)

TRAINING_TIMEOUT = 1800.0
WAIT_TIMEOUT = 300.0  # outbox, conversion, swap
POLL = 0.25
_ENDED = {
    training_pb2.TRAINING_PHASE_SUCCEEDED,
    training_pb2.TRAINING_PHASE_FAILED,
    training_pb2.TRAINING_PHASE_STOPPED,
    training_pb2.TRAINING_PHASE_ABORTED,
}


class DemoError(RuntimeError):
    """A stage of the loop did not happen; the message says which and why."""


@dataclass(frozen=True)
class RoundRow:
    round: int
    uploads: int  # frames the robots' detector (or Upload) sent to the hub
    candidates: int  # inbox images the round's label budget was spent on (round 1: the bootstrap)
    annotated: int  # images annotated in this round
    images: int  # annotated images in the project
    annotations: int  # annotations created in this round
    training: str  # training id; empty when the filter uploaded nothing (the model stays)
    version: str  # the model served at the end of the round: this round's, unless the gate held it back
    formats: tuple[str, ...]  # the formats of this round's model on the hub once converted
    map50: float  # of the served model on the held-out frames, through the detector
    detect_p50_ms: float  # median latency of the scoring's Detect calls, one frame at a time
    stream_p50_ms: float | None  # median latency the streaming robots saw, submit to answer (None: no stream)
    served: int  # frames the detector answered this round
    seconds: float
    held: str = ""  # the model trained in this round when the promotion gate held it back
    gate: str = ""  # the gate's reason for its decision on this round's model
    random_map50: float | None = None  # the random baseline at the same budget (None: not run)


@dataclass
class DemoResult:
    config: LoopConfig
    backend: str
    rows: list[RoundRow] = field(default_factory=list)
    served_versions: list[set[str]] = field(default_factory=list)  # per round: versions that answered robots

    @property
    def seconds(self) -> float:
        return sum(r.seconds for r in self.rows)


def _wait(condition: Callable[[], bool], what: str, timeout: float = WAIT_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise DemoError(f"{what} did not happen within {timeout:.0f} s")
        time.sleep(POLL)


class _Loop:
    def __init__(self, config: LoopConfig, stack: Stack, progress: Progress, baseline: RandomBaseline | None) -> None:
        self.config = config
        self.stack = stack
        self.progress = progress
        self.baseline = baseline
        self.scenes = config.scenes()
        self.hub = LoopClient(stack.hub, stack.config.organization, stack.config.project)
        self.detector = DetectorClient(stack.detector, timeout=30.0)
        self.annotator = AnnotatorClient(stack.annotator, stack.config.organization, stack.config.project, timeout=600)
        self.truth = GroundTruth()
        self.version = ""
        self.images = 0
        self.seen: list[Frame] = []  # the frames the robots saw this round
        converter = stack.servers["converter"].settings
        assert isinstance(converter, ConverterSettings)
        self.formats = set(converter.targets())

    def close(self) -> None:
        self.annotator.close()
        self.detector.close()
        self.hub.close()

    def run(self, result: DemoResult) -> None:
        self.categories = ensure_categories(self.hub, self.scenes.categories)
        with self.progress.bar("held-out frames", self.config.held_out) as bar:
            self.held_out = self.scenes.held_out(self.config.held_out)
            bar.update(len(self.held_out))
        self._validation()
        for round_ in range(1, self.config.rounds + 1):
            started = time.perf_counter()
            streamed: list[float] = []
            first = not self.version
            if not first:
                report = self._stream(round_)
                uploads, served, streamed = report.uploaded, report.answered, report.latencies
                result.served_versions.append(report.versions)
            else:
                uploads, served = self._bootstrap(round_), 0
                result.served_versions.append(set())
            self._drain()
            candidates = uploads if first else self._select(round_)
            annotated = self._annotate(round_, INBOX if first else QUEUE)
            training_id, held, gate = "", "", ""
            formats: tuple[str, ...] = ()
            if annotated.images:
                training = self._train(round_)
                training_id, trained = training.id, training.result_model_version
                formats = self._converted(trained)
                promotion = self._promotion(trained)
                gate = promotion.reason
                if promotion.state == model_pb2.PROMOTION_STATE_PROMOTED:
                    self._swapped(trained)
                    self.version = trained
                else:
                    held = trained
                    self.progress.say(
                        f"round {round_}: {trained} held back ({gate}); the detector keeps {self.version}"
                    )
            elif not self.version:
                raise DemoError("the hub received none of the bootstrap frames: nothing to annotate")
            else:
                self.progress.say(f"round {round_}: the filter uploaded nothing; the detector keeps {self.version}")
            map50, scored = self._score(round_)
            random_map50 = self._baseline(round_, first, annotated.images)
            row = RoundRow(
                round=round_,
                uploads=uploads,
                candidates=candidates,
                annotated=annotated.images,
                images=self.images,
                annotations=annotated.annotations,
                training=training_id,
                version=self.version,
                formats=formats,
                map50=map50,
                detect_p50_ms=statistics.median(scored) * 1000,
                stream_p50_ms=statistics.median(streamed) * 1000 if streamed else None,
                served=served + len(scored),
                seconds=time.perf_counter() - started,
                held=held,
                gate=gate,
                random_map50=random_map50,
            )
            result.rows.append(row)
            log.info("round done", **{k: v for k, v in row.__dict__.items() if k != "formats"})
            baseline = "" if random_map50 is None else f" (random picks {random_map50:.3f})"
            self.progress.say(
                f"round {round_}: +{row.annotated} images ({row.images} in all), model {self.version}, "
                f"mAP@0.5 {map50:.3f}{baseline}, detect p50 {row.detect_p50_ms:.1f} ms, "
                f"{row.served} frames served, {row.seconds:.0f} s" + (f"; gate: {gate}" if gate and not held else "")
            )

    # --- stages -------------------------------------------------------------------------------

    def _robot_frames(self, round_: int) -> list[list[Frame]]:
        config = self.config
        frames = []
        with self.progress.bar(f"round {round_}: camera frames", config.robots * config.frames) as bar:
            for robot in range(config.robots):
                frames.append(self.scenes.robot(robot, round_, config.frames))
                self.truth.add(frames[-1])
                bar.update(config.frames)
        self.seen = [frame for own in frames for frame in own]
        return frames

    def _bootstrap(self, round_: int) -> int:
        frames = self.scenes.bootstrap(self.config.bootstrap)
        self.truth.add(frames)
        shares = [frames[r :: self.config.robots] for r in range(self.config.robots)]
        with self.progress.bar(f"round {round_}: robots upload (no model yet)", len(frames)) as bar:
            return robots.upload(self.stack.detector, [s for s in shares if s], bar.update)

    def _stream(self, round_: int) -> robots.StreamReport:
        frames = self._robot_frames(round_)
        self.stack.clock.advance(self.config.round_gap)  # the robots come back hours later
        total = sum(len(own) for own in frames)
        with self.progress.bar(f"round {round_}: robots stream to the detector", total) as bar:
            report = robots.stream(self.stack.detector, frames, self.config.fps, bar.update)
            bar.set_postfix(uploaded=report.uploaded)
        if report.answered == 0:
            raise DemoError(f"round {round_}: the detector answered none of {total} frames")
        return report

    def _drain(self) -> None:
        """Wait until the detector's outbox has handed every upload to the hub."""
        _wait(lambda: self.detector.about().outbox.depth == 0, "the detector's outbox emptying")

    def _select(self, round_: int) -> int:
        """Spend the round's label budget on the inbox (SelectImages); how many candidates there were."""
        budget, how = self.config.labels(), self.config.acquisition
        with self.progress.bar(f"round {round_}: picking {budget} images ({how})", unit="s"):
            answer = self.annotator.select(budget, how, ACQUISITION_SCORE_THRESHOLD, seed=self.config.seed)
        self.progress.say(f"round {round_}: {len(answer.selected)} of {answer.candidates} candidates picked ({how})")
        return answer.candidates

    def _annotate(self, round_: int, state: int) -> Annotated:
        where = "the inbox" if state == INBOX else "the queue"
        with self.progress.bar(f"round {round_}: annotating {where}", unit="image") as bar:
            annotated = annotate(self.hub, self.truth, self.categories, bar.update, state)
        self.images += annotated.images
        return annotated

    def _baseline(self, round_: int, first: bool, count: int) -> float | None:
        """The random baseline's mAP@0.5 after this round (None without one, and in round 1: the same model)."""
        if self.baseline is None:
            return None
        if first:
            self.baseline.start(self.hub, self.version, self.scenes.bootstrap(self.config.bootstrap))
            return None
        with self.progress.bar(f"round {round_}: random picks at the same budget ({count} images)", unit="s"):
            return self.baseline.round(self.seen, count)

    def _train(self, round_: int) -> training_pb2.Training:
        values = struct_pb2.Struct()
        values.update(self.config.training_spec(self.images, continued=bool(self.version)))
        spec = training_pb2.TrainingSpec(hyperparameters=values, base_model_version=self.version)
        training = self.hub.create_training(spec)
        request = training_service_pb2.GetTrainingRequest(training_id=training.id)
        deadline = time.monotonic() + TRAINING_TIMEOUT
        epochs = self.config.epochs_for(self.images, continued=bool(self.version))
        with self.progress.bar(f"round {round_}: training on {self.images} images", epochs, unit="epoch") as bar:
            while training.phase not in _ENDED:
                if time.monotonic() > deadline:
                    raise DemoError(f"training {training.id} did not end within {TRAINING_TIMEOUT:.0f} s")
                time.sleep(POLL)
                training = self.hub.trainings.GetTraining(request, timeout=self.hub.timeout).training
                status = training.status
                bar.update(max(0, status.epoch - bar.n))
                state = training_pb2.TrainingState.Name(status.state).removeprefix("TRAINING_STATE_").lower()
                bar.set_postfix_str(f"{state}, loss {status.loss:.3f}" if status.loss else state)
        if training.phase != training_pb2.TRAINING_PHASE_SUCCEEDED or not training.result_model_version:
            errors = "; ".join(e.message for e in training.status.errors) or "no error recorded"
            phase = training_pb2.TrainingPhase.Name(training.phase)
            raise DemoError(f"round {round_}: training {training.id} ended {phase}: {errors}")
        return training

    def _validation(self) -> None:
        frames = self.scenes.validation(self.config.validation)
        with self.progress.bar("validation frames the trainer holds out", len(frames)) as bar:
            upload_validation(self.hub, frames, self.categories, bar.update)

    def _promotion(self, version: str) -> model_pb2.Promotion:
        """The hub's promotion-gate decision on ``version``."""
        return next(m.promotion for m in self.hub.list_models() if m.version == version)

    def _converted(self, version: str) -> tuple[str, ...]:
        """Wait until the converter published every target format of ``version``."""
        formats: tuple[str, ...] = ()

        def done() -> bool:
            nonlocal formats
            found = [m for m in self.hub.list_models() if m.version == version]
            formats = tuple(sorted(found[0].formats)) if found else ()
            return self.formats <= set(formats)

        with self.progress.bar(f"converting {version} to {', '.join(sorted(self.formats))}", unit="s"):
            _wait(done, f"conversion of {version} to {', '.join(sorted(self.formats))}")
        return formats

    def _swapped(self, version: str) -> None:
        """Wait until the detector serves ``version``."""
        project = self.stack.config.project

        def serving() -> bool:
            try:
                loaded = self.detector.about().models
            except grpc.RpcError:
                return False
            return any(m.name == project and m.info.version == version for m in loaded)

        with self.progress.bar(f"detector swapping to {version}", unit="s"):
            _wait(serving, f"the detector's swap to {version}")

    def _score(self, round_: int) -> tuple[float, list[float]]:
        """mAP@0.5 of the served model on the held-out frames, and each call's latency."""
        found, expected, latencies = [], [], []
        count = len(self.held_out)
        with self.progress.bar(f"round {round_}: scoring {count} held-out frames", count) as bar:
            for frame in self.held_out:
                started = time.perf_counter()
                answer = self.detector.detect(
                    frame.data,
                    camera_id="held-out",
                    autoupload="disabled",  # scoring must not feed the loop
                    score_threshold=EVALUATION_SCORE_THRESHOLD,
                )
                latencies.append(time.perf_counter() - started)
                if answer.model_version != self.version:
                    raise DemoError(f"held-out frame answered by {answer.model_version}, not {self.version}")
                found.append(predictions_from_detections(answer.detections))
                expected.append(truths(frame.annotations))
                bar.update()
        names = [name for name, _ in self.scenes.categories]
        return evaluate(expected, found, names).map50, latencies


def run_rounds(
    config: LoopConfig, stack: Stack, progress: Progress | None = None, *, baseline: bool = True
) -> DemoResult:
    """Run ``config.rounds`` rounds against the services of ``stack`` (started, on a fresh project),
    with the random baseline beside them unless ``baseline`` is False."""
    result = DemoResult(config, stack.config.backend)
    with tempfile.TemporaryDirectory(prefix="baseline-", dir=stack.config.data_dir) as folder:
        random_picks = RandomBaseline(config, Path(folder)) if baseline else None
        loop = _Loop(config, stack, progress or Progress(enabled=False), random_picks)
        try:
            loop.run(result)
        finally:
            loop.close()
    return result


def stack_config(config: LoopConfig, data_dir: Path, backend: str = "onnxruntime") -> StackConfig:
    """The services the demo runs: its upload filter on the detector."""
    return StackConfig(data_dir, backend=backend, detector=config.detector_settings())


def run_demo(
    config: LoopConfig,
    data_dir: Path,
    *,
    backend: str = "onnxruntime",
    progress: Progress | None = None,
    baseline: bool = True,
) -> DemoResult:
    """Start the services in ``data_dir``, run ``config.rounds`` rounds, stop them; one row per round."""
    progress = progress or Progress(enabled=False)
    stack = Stack(stack_config(config, data_dir, backend))
    with progress.bar(f"starting hub, detector ({backend}), trainer, converter, annotator", unit="s"):
        stack.start()
    try:
        return run_rounds(config, stack, progress, baseline=baseline)
    finally:
        with progress.bar("stopping the services", unit="s"):
            stack.stop()
