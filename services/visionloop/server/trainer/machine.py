"""The training state machine: one step per state, persisted after each.

initialized → data downloading → data downloaded → train model downloading → train model
downloaded → running → training finished → confusion matrix syncing → synced → model uploading
→ uploaded → detecting → detected → detection uploading → ready for cleanup.

A step that raises is retried with backoff up to ``max_attempts`` times, each failure recorded
on the hub as a ``StepError``; a ``CriticalError`` (a plug-in's ``CannotTrain``), anything that
is not an ``Exception`` (a plug-in calling ``sys.exit``), or the last attempt ends the training
as failed with the reason.
So does an error outside the steps (writing the record, the machine's own bookkeeping): a
training never takes the trainer down with it. A run that never ends cleanly (the process is
killed, runs out of memory) counts in the record; after ``max_crashes`` of them without progress
the next start fails the training instead of running it again. A full disk is not the training's
fault: the step (or the record's save) waits with backoff until there is space again, the lease
renewed meanwhile, without using up attempts; the hub shows it as one ``StepError`` per wait.

A restart finds the record in the data folder and continues from the last completed state;
"during" states fall back to the state before them, and every step is written to be repeated
safely (downloads skip what is there, training resumes from its checkpoint, uploads remember
what went out and the hub publishes one version per training).

Stop: training returns early keeping its best state, which is evaluated and uploaded; the
detection steps are skipped. Abort: the current step is interrupted where it is safe, nothing
more is uploaded, and the training folder is deleted.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import grpc
import numpy as np
from google.protobuf import json_format

from visionloop.client.loop import CATEGORY_TYPES
from visionloop.common.v1 import detection_pb2, training_pb2
from visionloop.lib import evaluation, hyperparameters, images
from visionloop.lib.archives import safe_extract
from visionloop.lib.model_format.model_json import MODEL_JSON, pack, read_model_json, write_model_json
from visionloop.runtime import limits
from visionloop.runtime.files import write_atomically
from visionloop.runtime.logging import get_logger
from visionloop.runtime.resources import Shortage, report, shortage_of
from visionloop.runtime.text import clip
from visionloop.server.trainer import data as training_data
from visionloop.server.trainer import metrics as trainer_metrics
from visionloop.server.trainer.hub_client import LIVE, TrainerHub
from visionloop.server.trainer.plugin import CannotTrain, CategoryInfo, Progress, TrainerPlugin, TrainJob
from visionloop.server.trainer.record import TrainingRecord

log = get_logger(__name__)

S = training_pb2
JOB = "job.json"
PUSH_INTERVAL_SECONDS = 2.0  # at most this often from epoch reports; lease renewals report too
_MAX_STEP_ERRORS = limits.max_items(limits.of(limits.field(S.TrainingStatus, "errors")))
_MAX_STEP_MESSAGE = limits.of(limits.field(S.StepError, "message")).max_length

# stable state -> (state while the step runs, state after it, step method name)
STEPS: dict[S.TrainingState, tuple[S.TrainingState, S.TrainingState, str]] = {
    S.TRAINING_STATE_INITIALIZED: (S.TRAINING_STATE_DATA_DOWNLOADING, S.TRAINING_STATE_DATA_DOWNLOADED, "prepare"),
    S.TRAINING_STATE_DATA_DOWNLOADED: (
        S.TRAINING_STATE_TRAIN_MODEL_DOWNLOADING,
        S.TRAINING_STATE_TRAIN_MODEL_DOWNLOADED,
        "download_base_model",
    ),
    S.TRAINING_STATE_TRAIN_MODEL_DOWNLOADED: (
        S.TRAINING_STATE_TRAINING_RUNNING,
        S.TRAINING_STATE_TRAINING_FINISHED,
        "train",
    ),
    S.TRAINING_STATE_TRAINING_FINISHED: (
        S.TRAINING_STATE_CONFUSION_MATRIX_SYNCING,
        S.TRAINING_STATE_CONFUSION_MATRIX_SYNCED,
        "evaluate",
    ),
    S.TRAINING_STATE_CONFUSION_MATRIX_SYNCED: (
        S.TRAINING_STATE_TRAIN_MODEL_UPLOADING,
        S.TRAINING_STATE_TRAIN_MODEL_UPLOADED,
        "upload_model",
    ),
    S.TRAINING_STATE_TRAIN_MODEL_UPLOADED: (S.TRAINING_STATE_DETECTING, S.TRAINING_STATE_DETECTED, "detect"),
    S.TRAINING_STATE_DETECTED: (
        S.TRAINING_STATE_DETECTION_UPLOADING,
        S.TRAINING_STATE_READY_FOR_CLEANUP,
        "upload_detections",
    ),
}
BEFORE = {during: stable for stable, (during, _, _) in STEPS.items()}
BEFORE[S.TRAINING_STATE_UNSPECIFIED] = S.TRAINING_STATE_INITIALIZED
SKIPPED_ON_STOP = (S.TRAINING_STATE_TRAIN_MODEL_UPLOADED, S.TRAINING_STATE_DETECTED)  # no detections


class CriticalError(CannotTrain):
    """Retrying cannot help (bad hyperparameters, no data): the training ends as failed."""


class Interrupted(Exception):
    """Abort requested, or the lease went to another trainer: leave the step now."""


class Unreported(Exception):
    """The training ended but the hub could not be told; the record stays for the next start."""


@dataclass(frozen=True)
class MachineSettings:
    inference_batch_size: int = 16
    keep_old_trainings: bool = False
    max_attempts: int = 3
    backoff_seconds: float = 2.0
    backoff_max_seconds: float = 60.0
    image_limits: images.Limits = images.DEFAULT_LIMITS
    max_crashes: int = 3


class TrainingMachine:
    """Runs one training to its end on the calling (worker) thread; control from any thread."""

    def __init__(
        self,
        record: TrainingRecord,
        plugin: TrainerPlugin,
        hub: TrainerHub,
        settings: MachineSettings,
        old_trainings: Path,
    ) -> None:
        self.record = record
        self.plugin = plugin
        self.hub = hub
        self.settings = settings
        self.old_trainings = old_trainings
        self._lock = threading.Lock()
        self._wake = threading.Event()  # cuts backoff sleeps short on abort
        self.lease_lost = False
        self.shutting_down = False  # the process exits; the record stays for the next start
        self._attempts: dict[int, int] = {}
        self._waits = 0  # a step's waits in a row for disk space (the hub got a StepError for the first)
        self._pushed = 0.0  # monotonic time of the last status report
        self._job: TrainJob | None = None

    # --- control (any thread) ---------------------------------------------------------------

    def request(self, end: str) -> None:
        """``"stop"`` or ``"abort"``; an abort overrides a stop, never the other way round."""
        with self._lock:
            if self.record.end != "abort":
                self.record.end = end
        if end == "abort":
            self._wake.set()

    def shutdown(self) -> None:
        """Leave the current step at the next safe point without ending the training."""
        self.shutting_down = True
        self._wake.set()

    @property
    def aborting(self) -> bool:
        return self.record.end == "abort" or self.lease_lost

    @property
    def interrupted(self) -> bool:
        return self.aborting or self.shutting_down

    @property
    def stopping(self) -> bool:
        """What a plug-in's ``cancelled()`` answers: leave training now, keeping the best state."""
        return self.record.end == "stop" or self.interrupted

    def snapshot(self) -> training_pb2.Training:
        with self._lock:
            copy = training_pb2.Training()
            copy.CopyFrom(self.record.training)
            return copy

    def push(self) -> None:
        """Send the status and renew the lease; picks up stop/abort requested on the hub."""
        if self.lease_lost:
            return
        self._pushed = time.monotonic()
        status = self.snapshot().status
        status.update_time.FromDatetime(datetime.now(UTC))
        try:
            training = self.hub.update(self.record.id, status)
        except grpc.RpcError as error:
            if error.code() == grpc.StatusCode.FAILED_PRECONDITION:
                log.warning("training lease lost", training_id=self.record.id, reason=error.details())
                self.lease_lost = True
                self._wake.set()
            else:
                log.info("status not sent; next renewal retries", training_id=self.record.id, error=str(error))
            return
        if training.abort_requested:
            self.request("abort")
        elif training.stop_requested:
            self.request("stop")

    # --- the loop (worker thread) -----------------------------------------------------------

    def run(self) -> int:
        """Drive the training to its end; returns the final phase (unspecified if the lease was lost
        or the process shuts down). Raises only ``Unreported``: whatever else goes wrong fails the
        training on the hub with its reason."""
        try:
            self._count_start()
            phase = self._drive()
        except Unreported:
            raise
        except BaseException as error:  # a plug-in's SystemExit too: the worker must live on
            return self._crashed(error)
        if phase == S.TRAINING_PHASE_UNSPECIFIED and self.shutting_down and self.record.folder.is_dir():
            self._progressed()  # a clean shutdown is no crash (the folder is gone if the lease was lost)
        return phase

    def _count_start(self) -> None:
        """Count this run as a crash until it progresses or ends; fail a training that keeps crashing."""
        record = self.record
        if record.crashes >= self.settings.max_crashes and not record.failure:
            state = S.TrainingState.Name(record.state)
            log.warning(
                "training keeps taking the trainer down; failing it", training_id=record.id, crashes=record.crashes
            )
            trainer_metrics.STEP_ERRORS.labels(trainer_metrics.state_name(record.state), "true").inc()
            self._fail(
                record.state,
                f"the trainer stopped {record.crashes} times while running this training (last in {state}) "
                "without progress in between, as when it is killed or runs out of memory; "
                "ended as failed so it stops taking the trainer down",
            )
            return
        record.crashes += 1
        self._save()

    def _progressed(self) -> None:
        if self.record.crashes:
            self.record.crashes = 0
            self._save()

    def _drive(self) -> int:
        record = self.record
        with self._lock:
            record.training.status.state = BEFORE.get(record.state, record.state)
            if record.end == "stop" and record.state in SKIPPED_ON_STOP:
                record.training.status.state = S.TRAINING_STATE_READY_FOR_CLEANUP
        self._save()
        while record.state != S.TRAINING_STATE_READY_FOR_CLEANUP and not record.failure:
            if self.shutting_down:
                return S.TRAINING_PHASE_UNSPECIFIED
            if self.aborting:
                return self._abort()
            during, after, step = STEPS[record.state]
            self._perform(during, after, getattr(self, step))
            if record.end == "stop" and record.state in SKIPPED_ON_STOP:
                self._set_state(S.TRAINING_STATE_READY_FOR_CLEANUP)  # a stopped training skips detections
            if record.state == S.TRAINING_STATE_CONFUSION_MATRIX_SYNCED and not self._has_model():
                self._set_state(S.TRAINING_STATE_READY_FOR_CLEANUP)  # stopped before a first checkpoint
        if self.aborting:
            return self._abort()
        return self._finish()

    def _crashed(self, error: BaseException) -> int:
        """An error outside the steps' own handling: fail the training with it and report that."""
        state = self.record.state
        log.error(
            "training crashed; ending it as failed",
            training_id=self.record.id,
            state=S.TrainingState.Name(state),
            exc_info=error,
        )
        trainer_metrics.STEP_ERRORS.labels(trainer_metrics.state_name(state), "true").inc()
        self._fail(state, f"the trainer failed in {S.TrainingState.Name(state)}: {_describe(error)}")
        return self._finish()

    def _fail(self, state: S.TrainingState, message: str) -> None:
        """Record a critical error; the training ends as failed (best effort: the record may not write)."""
        with self._lock:
            entry = self.record.training.status.errors.add(state=state, message=message, attempts=1, critical=True)
            entry.time.FromDatetime(datetime.now(UTC))
            self.record.failure = message
            self.record.crashes = 0
        try:
            self.record.save()
        except OSError as error:
            log.warning("training record not written", training_id=self.record.id, error=str(error))

    def _perform(self, during: S.TrainingState, after: S.TrainingState, action: Callable[[], None]) -> None:
        before = self.record.state
        self._set_state(during, progress=0.0)
        try:
            action()
        except Interrupted:
            self._set_state(before)
            return
        except BaseException as error:  # every failure is recorded, then retried or fatal
            if self.interrupted and isinstance(error, Exception):
                self._set_state(before)
                return
            self._failed(before, during, error)
            return
        self._attempts.pop(during, None)
        self._waits = 0
        self.record.crashes = 0  # progress: earlier crashes were not this training's doing
        self._set_state(after, progress=1.0)

    def _failed(self, before: S.TrainingState, during: S.TrainingState, error: BaseException) -> None:
        shortage = shortage_of(error) if isinstance(error, Exception) else None
        if shortage is not None and shortage.retry_later and not isinstance(error, CannotTrain):
            self._wait_for_space(before, during, shortage, error)
            return
        attempts = self._attempts.get(during, 0) + 1
        self._attempts[during] = attempts
        # Not an Exception (SystemExit, KeyboardInterrupt raised by a plug-in): no retry can help.
        critical = (
            isinstance(error, CannotTrain)  # a CriticalError, or a plug-in's
            or not isinstance(error, Exception)
            or attempts >= self.settings.max_attempts
        )
        message = _describe(error)
        log.warning(
            "training step failed",
            training_id=self.record.id,
            state=S.TrainingState.Name(during),
            attempt=attempts,
            critical=critical,
            error=message,
        )
        trainer_metrics.STEP_ERRORS.labels(trainer_metrics.state_name(during), str(critical).lower()).inc()
        with self._lock:
            entry = self.record.training.status.errors.add(
                state=during, message=message, attempts=attempts, critical=critical
            )
            entry.time.FromDatetime(datetime.now(UTC))
            del self.record.training.status.errors[:-_MAX_STEP_ERRORS]  # the newest, as many as the hub takes
            self.record.training.status.state = before
            if critical:
                self.record.failure = message
        self._save()
        self.push()
        if not critical:
            delay = min(self.settings.backoff_seconds * 2 ** (attempts - 1), self.settings.backoff_max_seconds)
            self._wake.wait(delay)

    def _wait_for_space(
        self, before: S.TrainingState, during: S.TrainingState, shortage: Shortage, error: BaseException
    ) -> None:
        """A step ran out of disk space: tell the hub once, then wait; the step runs again afterwards."""
        report(shortage, error, training_id=self.record.id, state=S.TrainingState.Name(during))
        with self._lock:
            if not self._waits:
                entry = self.record.training.status.errors.add(
                    state=during, message=f"waiting: {shortage.message}", attempts=self._attempts.get(during, 0)
                )
                entry.time.FromDatetime(datetime.now(UTC))
            self.record.training.status.state = before  # saved by the step's next try, once there is space
        self.push()
        self._wake.wait(min(self.settings.backoff_seconds * 2**self._waits, self.settings.backoff_max_seconds))
        self._waits += 1

    def _save(self) -> None:
        """Write the record; on a full disk wait for space (the lease is renewed meanwhile) rather than
        end the worker. An interrupted wait returns unsaved: the record on disk is the one before, and
        every step may be repeated."""
        delay = self.settings.backoff_seconds
        while True:
            try:
                self.record.save()
                return
            except OSError as error:
                shortage = shortage_of(error)
                if shortage is None or not shortage.retry_later:
                    raise
                report(shortage, error, training_id=self.record.id)
            if self.interrupted or self._wake.wait(delay):
                return
            delay = min(delay * 2, self.settings.backoff_max_seconds)

    def _set_state(self, state: S.TrainingState, progress: float | None = None) -> None:
        with self._lock:
            self.record.training.status.state = state
            if progress is not None:
                self.record.training.status.progress = progress
        trainer_metrics.show_state(state)
        if progress is not None:
            trainer_metrics.PROGRESS.set(progress)
        self._save()
        self.push()

    def _progress(self, fraction: float) -> None:
        value = float(min(max(fraction, 0.0), 1.0))
        with self._lock:
            self.record.training.status.progress = value
        trainer_metrics.PROGRESS.set(value)

    def _check(self) -> None:
        if self.interrupted:
            raise Interrupted

    # --- endings ------------------------------------------------------------------------------

    def _finish(self) -> int:
        record = self.record
        if record.failure:
            phase = S.TRAINING_PHASE_FAILED
        elif record.end == "stop":
            phase = S.TRAINING_PHASE_STOPPED
        else:
            phase = S.TRAINING_PHASE_SUCCEEDED
        version = "" if phase == S.TRAINING_PHASE_FAILED else record.result_version
        for attempt in range(1, self.settings.max_attempts + 1):
            try:
                self.hub.finish(record.id, phase, self.snapshot().status, version)
                break
            except grpc.RpcError as error:
                if error.code() == grpc.StatusCode.FAILED_PRECONDITION:
                    break  # the hub ended it already (or gave it away): nothing left to report
                if attempt == self.settings.max_attempts:
                    self._progressed()  # not a crash: the record stays and the next start finishes it
                    raise Unreported(f"the hub did not take the end of training {record.id}: {error}") from error
                self._wake.wait(self.settings.backoff_seconds * attempt)
        log.info(
            "training ended",
            training_id=record.id,
            phase=S.TrainingPhase.Name(phase),
            version=version,
            failure=record.failure or None,
        )
        self._clean_up(keep=self.settings.keep_old_trainings)
        trainer_metrics.TRAININGS.labels(S.TrainingPhase.Name(phase).removeprefix("TRAINING_PHASE_")).inc()
        return phase

    def _abort(self) -> int:
        if self.lease_lost:
            log.warning("training dropped: another trainer holds it", training_id=self.record.id)
            self._clean_up(keep=False)
            return S.TRAINING_PHASE_UNSPECIFIED
        try:
            self.hub.finish(self.record.id, S.TRAINING_PHASE_ABORTED, self.snapshot().status, "")
        except grpc.RpcError as error:
            log.info("abort not reported; the hub ends it at the next claim", error=str(error))
        log.info("training aborted", training_id=self.record.id)
        self._clean_up(keep=False)
        trainer_metrics.TRAININGS.labels("ABORTED").inc()
        return S.TRAINING_PHASE_ABORTED

    def _clean_up(self, keep: bool) -> None:
        try:
            self.plugin.close()
        except Exception:  # the training is over; what the plug-in failed to release goes with the process
            log.exception("plug-in close failed", training_id=self.record.id)
        folder = self.record.folder
        if keep:
            self.old_trainings.mkdir(parents=True, exist_ok=True)
            target = self.old_trainings / folder.name
            shutil.rmtree(target, ignore_errors=True)
            folder.rename(target)
        else:
            shutil.rmtree(folder, ignore_errors=True)

    # --- steps --------------------------------------------------------------------------------

    def prepare(self) -> None:
        spec = self.record.training.spec
        values = hyperparameters.from_struct(spec.hyperparameters)
        if problems := hyperparameters.generic_problems(values):  # even for a plug-in whose verify skips them
            raise CriticalError("hyperparameters rejected: " + "; ".join(problems))
        verification = self.plugin.verify(spec.model_variant, values)
        if not verification.valid:
            raise CriticalError("hyperparameters rejected: " + "; ".join(verification.errors))
        variant = self.plugin.variant(spec.model_variant)
        assert variant is not None  # verify() rejects unknown variants
        categories = self._categories(variant.category_types)
        folder = self.record.folder
        job = {
            "variant": variant.name,
            "hyperparameters": dict(verification.corrected),
            "warnings": list(verification.warnings),
            "categories": [c.__dict__ for c in categories],
        }
        write_atomically(folder / JOB, json.dumps(job, indent=1).encode())
        data = training_data.download(self.hub, folder, categories, self._progress, self.settings.image_limits)
        if not data.train:
            raise CriticalError(
                f"no training images: the project has {len(data.test)} complete test images and "
                f"{data.skipped} that do not decode; annotate images and mark them complete"
            )
        with self._lock:
            counts = self.record.training.status.image_counts
            counts.train, counts.test, counts.skipped = len(data.train), len(data.test), data.skipped

    def _categories(self, supported: tuple[str, ...]) -> list[CategoryInfo]:
        spec = self.record.training.spec
        by_id = {c.id: c for c in self.hub.categories()}
        names = {value: name for name, value in CATEGORY_TYPES.items()}
        if spec.category_ids:
            unknown = [i for i in spec.category_ids if i not in by_id]
            if unknown:
                raise CriticalError(f"categories {unknown} do not exist in the project")
            chosen = [by_id[i] for i in spec.category_ids]
        else:
            chosen = [c for c in by_id.values() if names.get(c.type) in supported]
        result = [CategoryInfo(c.id, c.name, names.get(c.type, "box")) for c in chosen]
        wrong = [c.name for c in result if c.type not in supported]
        if wrong:
            raise CriticalError(f"categories {wrong} have types this model variant cannot learn ({supported})")
        if not result:
            raise CriticalError(f"the project has no categories of the types {supported}")
        return result

    def download_base_model(self) -> None:
        version = self.record.training.spec.base_model_version
        target = self.record.folder / "base"
        if not version or (target / MODEL_JSON).is_file():
            return
        job = self.job()
        variant = self.plugin.variant(job.variant)
        fmt = variant.formats[0] if variant else "pytorch"
        archive = self.record.folder / "base.zip"
        self.hub.download_model(version, fmt, archive)
        shutil.rmtree(target, ignore_errors=True)
        safe_extract(archive, target)
        archive.unlink()
        self._job = None  # read again: it now has a base model

    def train(self) -> None:
        job = self.job()
        epochs = int(job.hyperparameters.get("epochs", 0))
        with self._lock:
            self.record.training.status.total_epochs = epochs

        def report(progress: Progress) -> None:
            with self._lock:
                status = self.record.training.status
                status.epoch, status.total_epochs = progress.epoch, progress.epochs
                status.loss = progress.loss
                status.progress = progress.fraction
                if progress.map50 is not None:
                    status.confusion_matrix.metrics.map50 = progress.map50
                self.record.crashes = 0  # an epoch went through: earlier crashes were not this training's doing
            self.record.save()
            if time.monotonic() - self._pushed >= PUSH_INTERVAL_SECONDS:  # dashboards see epochs promptly
                self.push()
            trainer_metrics.EPOCH.set(progress.epoch)
            trainer_metrics.LOSS.set(progress.loss)
            trainer_metrics.PROGRESS.set(progress.fraction)
            trainer_metrics.LAST_PROGRESS.set_to_current_time()
            if progress.map50 is not None:
                trainer_metrics.MAP50.set(progress.map50)
            log.info(
                "epoch finished",
                training_id=self.record.id,
                epoch=progress.epoch,
                epochs=progress.epochs,
                loss=round(progress.loss, 5),
                map50=progress.map50,
            )

        self.plugin.train(job, report, lambda: self.stopping)
        self._check()

    def evaluate(self) -> None:
        """Metrics of the new model on the held-out images, and of the base model on the same images.

        The base model's own metrics were measured on an earlier, smaller held-out set; measured
        again here they give the hub's promotion gate a fair comparison.
        """
        job = self.job()
        if not self.plugin.has_model(job) or not job.test_images:
            return
        base_version = self.record.training.spec.base_model_version
        compare = job.base_model is not None and bool(base_version)
        share = 0.5 if compare else 1.0  # of the step's progress
        result = self._score(lambda frames: self.plugin.detect(job, frames), 0.0, share)
        assert result is not None
        trainer_metrics.MAP50.set(result.map50)
        metrics = result.to_proto({c.name: c.id for c in job.categories})
        metrics.held_out_digest = training_data.held_out_digest(job.test_images)
        if compare:
            baseline = self._score(lambda frames: self.plugin.detect_base(job, frames), share, 1.0)
            if baseline is None:
                log.info("the plug-in cannot run the base model; no baseline", training_id=self.record.id)
            else:
                metrics.baselines.add(version=base_version, map50=baseline.map50, map50_95=baseline.map50_95)
                log.info(
                    "evaluated",
                    training_id=self.record.id,
                    map50=round(result.map50, 4),
                    base_version=base_version,
                    base_map50=round(baseline.map50, 4),
                    images=len(job.test_images),
                )
        with self._lock:
            self.record.training.status.confusion_matrix.metrics.CopyFrom(metrics)

    def _score(
        self, detect: Callable[[list[np.ndarray]], list[detection_pb2.Detections] | None], start: float, end: float
    ) -> evaluation.Evaluation | None:
        """``detect``'s metrics on the held-out images; None when it answers None (it cannot run)."""
        job = self.job()
        names = [c.name for c in job.categories]
        truths, predictions = [], []
        batch = self.settings.inference_batch_size
        for first in range(0, len(job.test_images), batch):
            self._check()
            chunk = job.test_images[first : first + batch]
            found = detect([image.pixels() for image in chunk])
            if found is None:
                return None
            for image, detections in zip(chunk, found, strict=True):
                truths.append(evaluation.truths_from_annotations(image.annotations))
                predictions.append(evaluation.predictions_from_detections(detections))
            self._progress(start + (end - start) * (first + len(chunk)) / len(job.test_images))
        return evaluation.evaluate(truths, predictions, names)

    def upload_model(self) -> None:
        job = self.job()
        spec = self.record.training.spec
        variant = self.plugin.variant(job.variant)
        formats = list(spec.formats) or list(variant.formats if variant else ())
        exports = self.record.folder / "export"
        for fmt in formats:
            self._check()
            if fmt in self.record.uploaded:
                continue
            folder = exports / fmt
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            self.plugin.export(job, fmt, folder)
            self._complete_model_json(folder, job)
            archive = pack(folder, exports / f"{fmt}.zip")
            version = self._upload(archive, fmt)
            with self._lock:
                self.record.uploaded[fmt] = version
                self.record.training.result_model_version = version
            self.record.save()
            self._progress(len(self.record.uploaded) / len(formats))
        shutil.rmtree(exports, ignore_errors=True)

    def _upload(self, archive: Path, fmt: str) -> str:
        """Upload ``archive`` as format ``fmt`` of this training's version; the version."""
        version = self.record.result_version
        try:
            return self.hub.upload_model(archive, fmt, version).version
        except grpc.RpcError as error:
            if not version or error.code() != grpc.StatusCode.ALREADY_EXISTS:
                raise
        # The version has this format already, from this training's model either way: the converter made it
        # from the pytorch upload before this step got to it, or an earlier attempt uploaded it and the
        # trainer stopped before recording that. Retrying would only meet ALREADY_EXISTS again.
        log.info("format already on the hub", training=self.record.id, version=version, format=fmt)
        return version

    def _complete_model_json(self, folder: Path, job: TrainJob) -> None:
        doc = read_model_json(folder)
        spec = self.record.training.spec
        doc["training_id"] = self.record.id
        doc["variant"] = job.variant
        if spec.base_model_version:
            doc["base_model_version"] = spec.base_model_version
        metrics = self.record.training.status.confusion_matrix.metrics
        if metrics.ByteSize():
            doc["metrics"] = json_format.MessageToDict(metrics, preserving_proto_field_name=True)
        doc.setdefault("comment", f"training {self.record.training.number}")
        write_model_json(folder, doc)

    def detect(self) -> None:
        job = self.job()
        folder = self.record.folder / "detections"
        listing = folder / "images.json"
        if not listing.is_file():  # fixed once, so a resumed step batches the same images
            ids = [m.id for m in self.hub.images(LIVE)]
            write_atomically(listing, json.dumps(ids).encode())
        ids = json.loads(listing.read_text())
        batch = self.settings.inference_batch_size
        batches = -(-len(ids) // batch)
        version = self.record.result_version
        for index in range(self.record.detection_batches, batches):
            self._check()
            chunk = ids[index * batch : (index + 1) * batch]
            decoded = []
            for image_id, data in self.hub.download_images(chunk):
                try:
                    decoded.append((image_id, images.decode(data, self.settings.image_limits)))
                except images.ImageError:
                    continue  # over this trainer's limits, or damaged: no detections for it
            results = self.plugin.detect(job, [frame for _, frame in decoded]) if decoded else []
            lines = []
            for (image_id, _), detections in zip(decoded, results, strict=True):
                for kind in ("boxes", "points", "segmentations", "classifications"):
                    for item in getattr(detections, kind):
                        item.model_version = version
                lines.append(json.dumps({"image_id": image_id, "detections": json_format.MessageToDict(detections)}))
            write_atomically(folder / f"{index:06d}.jsonl", "\n".join(lines).encode())
            with self._lock:
                self.record.detection_batches = index + 1
            self.record.save()
            self._progress((index + 1) / batches)

    def upload_detections(self) -> None:
        folder = self.record.folder / "detections"
        total = self.record.detection_batches
        for index in range(self.record.detection_batches_uploaded, total):
            self._check()
            text = (folder / f"{index:06d}.jsonl").read_text()
            for line in filter(None, text.splitlines()):
                entry = json.loads(line)
                detections = json_format.ParseDict(entry["detections"], detection_pb2.Detections())
                try:
                    self.hub.put_detections(entry["image_id"], detections)
                except grpc.RpcError as error:
                    if error.code() != grpc.StatusCode.NOT_FOUND:
                        raise  # a deleted image is no reason to fail; anything else is retried
            with self._lock:
                self.record.detection_batches_uploaded = index + 1
            self.record.save()
            self._progress((index + 1) / max(total, 1))

    # --- helpers ------------------------------------------------------------------------------

    def job(self) -> TrainJob:
        """The plug-in's view of the training, read once after ``prepare`` wrote it (it never changes)."""
        if self._job is None:
            self._job = self._read_job()
        return self._job

    def _read_job(self) -> TrainJob:
        folder = self.record.folder
        doc = json.loads((folder / JOB).read_text())
        data = training_data.load(folder)
        base = folder / "base"
        return TrainJob(
            training_id=self.record.id,
            variant=doc["variant"],
            hyperparameters=doc["hyperparameters"],
            categories=tuple(CategoryInfo(**c) for c in doc["categories"]),
            folder=folder / "work",
            train_images=data.train,
            test_images=data.test,
            base_model=base if (base / MODEL_JSON).is_file() else None,
        )

    def _has_model(self) -> bool:
        return self.plugin.has_model(self.job())


def _describe(error: BaseException) -> str:
    """The error as a StepError message, clipped to what the hub's contract accepts (exceptions quote anything)."""
    if isinstance(error, grpc.RpcError):
        text = f"hub answered {error.code().name}: {error.details()}"
    else:
        text = f"{type(error).__name__}: {error}" if not isinstance(error, CannotTrain) else str(error)
    return clip(text, _MAX_STEP_MESSAGE)
