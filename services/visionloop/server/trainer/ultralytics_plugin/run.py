"""One Ultralytics training in a training folder: started once, resumed after any crash.

Ultralytics writes ``run/weights/last.pt`` (model, EMA, optimizer, epoch) after every epoch and
``best.pt`` when the epoch scored best on the validation images, but not atomically: a
``kill -9`` during the write leaves a truncated file. So after each save the run copies both
atomically (``runtime.files``) to ``checkpoint.pt`` and ``best.pt`` in the training folder, best
first, and those are what a restart resumes from and what is exported. ``finished.json`` marks a
training that ran to its end (all epochs, or Ultralytics' early stop).

``cancelled()`` is checked after every training and validation batch; once true the run raises
``Cancelled`` out of Ultralytics, which leaves its files as the last complete epoch wrote them.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from visionloop.runtime.files import write_atomically
from visionloop.runtime.logging import get_logger
from visionloop.server.trainer.plugin import Progress

log = get_logger(__name__)

RUN = "run"  # Ultralytics' own run folder (project=<training folder>, name=run)
CHECKPOINT = "checkpoint.pt"
BEST = "best.pt"
FINISHED = "finished.json"
# Given again on resume: Ultralytics takes everything else from the checkpoint.
RESUME_ARGUMENTS = ("data", "device", "workers", "plots", "val")


class Cancelled(Exception):
    """``cancelled()`` turned true: the run left Ultralytics' loop between batches."""


@dataclass(frozen=True)
class Paths:
    folder: Path

    @property
    def checkpoint(self) -> Path:
        return self.folder / CHECKPOINT

    @property
    def best(self) -> Path:
        return self.folder / BEST

    @property
    def finished(self) -> Path:
        return self.folder / FINISHED

    @property
    def last(self) -> Path:
        return self.folder / RUN / "weights" / "last.pt"


def train(
    paths: Paths,
    start: str,
    arguments: Mapping[str, Any],
    report: Callable[[Progress], None],
    cancelled: Callable[[], bool],
    metric: str,
) -> None:
    """Train ``start`` (a .pt or yaml) with Ultralytics ``arguments``, or resume from the checkpoint.

    ``metric`` names the validation mAP@0.5 reported with each epoch (``metrics/mAP50(B)``).
    """
    from ultralytics import YOLO

    if paths.finished.is_file():
        return
    epochs = int(arguments["epochs"])
    if paths.checkpoint.is_file():
        paths.last.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(paths.checkpoint, paths.last)  # Ultralytics' own copy may be torn
        model = YOLO(str(paths.last))
        done = int(model.ckpt.get("epoch", -1)) + 1
        if done >= epochs:  # killed after the last epoch's checkpoint: nothing left to train
            _finish(paths, done)
            return
        log.info("resuming Ultralytics training", epoch=done + 1, epochs=epochs, folder=str(paths.folder))
        kwargs: dict[str, Any] = {k: arguments[k] for k in RESUME_ARGUMENTS if k in arguments}
        kwargs["resume"] = True
        kwargs["save_dir"] = str(paths.folder / RUN)  # the training folder may have moved since
    else:
        shutil.rmtree(paths.folder / RUN, ignore_errors=True)
        model = YOLO(start)
        kwargs = {**arguments, "project": str(paths.folder), "name": RUN, "exist_ok": True}
    saved = {"epoch": -1}

    def check(_: object) -> None:
        if cancelled():
            raise Cancelled

    def keep(trainer: Any) -> None:
        """After Ultralytics saved an epoch: the atomic copies a restart trusts."""
        if trainer.best_fitness == trainer.fitness and trainer.best.is_file():  # as save_model decides
            write_atomically(paths.best, trainer.best.read_bytes())
        write_atomically(paths.checkpoint, trainer.last.read_bytes())
        saved["epoch"] = trainer.epoch

    def epoch_end(trainer: Any) -> None:
        # Once per saved epoch: the final validation of best.pt runs this callback again.
        if trainer.epoch != saved["epoch"]:
            return
        saved["epoch"] = -1
        losses = trainer.label_loss_items(trainer.tloss, prefix="train") if trainer.tloss is not None else {}
        score = (trainer.metrics or {}).get(metric)
        report(
            Progress(
                epoch=trainer.epoch + 1,
                epochs=trainer.epochs,
                loss=float(sum(losses.values())),
                map50=None if score is None else float(score),
                extra={k.removeprefix("train/"): float(v) for k, v in losses.items()},
            )
        )

    def train_end(trainer: Any) -> None:
        _finish(paths, trainer.epoch + 1)

    for event in ("on_train_batch_end", "on_val_batch_end", "on_train_epoch_start"):
        model.add_callback(event, check)
    model.add_callback("on_model_save", keep)
    model.add_callback("on_fit_epoch_end", epoch_end)
    model.add_callback("on_train_end", train_end)
    try:
        model.train(**kwargs)
    except Cancelled:
        log.info("Ultralytics training left early", folder=str(paths.folder))


def _finish(paths: Paths, epochs: int) -> None:
    write_atomically(paths.finished, json.dumps({"epochs": epochs}).encode())
