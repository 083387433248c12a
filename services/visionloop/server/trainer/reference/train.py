"""A resumable, deterministic training run for the reference CenterNet.

Images are letterboxed with the detector's own pre-processing (``detector.preprocess.prepare``),
so what the model sees in training is exactly what it sees when served. The prepared frames are
kept in memory as uint8 (exactly what ``prepare`` scaled to [0, 1], at a quarter of the size).

A run checkpoints into its folder after every epoch (``last.pt``: model, optimiser, schedule,
epoch, RNG and loss history; ``best.pt``: the best model so far), each written atomically, so a
run killed at any moment resumes from its last completed epoch and ends as if never interrupted.
Under torchrun it trains on every rank (see ``distributed``).
"""

from __future__ import annotations

import io
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from visionloop.common.v1 import model_pb2
from visionloop.lib.centernet.model import POINT_SIZE, STRIDE, CenterNet, loss
from visionloop.lib.preprocess import Frame, prepare
from visionloop.lib.training_data import Annotation, Sample
from visionloop.runtime.files import write_atomically
from visionloop.runtime.logging import get_logger
from visionloop.server.trainer.reference import distributed

log = get_logger(__name__)

Progress = Callable[[int, float], None]  # (epoch, 1-based; mean loss over the epoch)
LAST, BEST = "last.pt", "best.pt"
_CHECKPOINT_VERSION = 1
_SCALE = np.float32(1.0 / 255.0)  # prepare()'s uint8 to [0, 1] factor
# The reference trainer's and the demo's rare-category oversampling (Hyperparameters.repeat_threshold):
# the images of any category that not every image holds are repeated, the rarer the more. Chosen on the
# rows field's selection seeds over 0.5: mAP@0.5 +2 points for random picks and for the acquisition.
REPEAT_THRESHOLD = 1.0


@dataclass(frozen=True)
class Hyperparameters:
    resolution: int = 320  # the longer side of the model input, in pixels
    epochs: int = 30
    batch_size: int = 16  # global: split over the ranks of a multi-worker run
    learning_rate: float = 3e-3  # peak of the one-cycle schedule
    flip_rl: bool = True
    flip_ud: bool = True
    width: int = 24  # model width (channels at stride 4)
    seed: int = 0
    # Rare-category oversampling (repeat factor sampling, as LVIS trainers do): an image holding a
    # category that fewer than this share of the images hold is shown sqrt(share wanted / share held)
    # times an epoch (its rarest category decides). 0: every image once an epoch.
    repeat_threshold: float = REPEAT_THRESHOLD


@dataclass(frozen=True)
class EpochReport:
    epoch: int
    epochs: int
    loss: float  # mean training loss over the epoch's batches (all ranks)
    seconds: float  # wall time of the epoch, evaluation and checkpoint included
    images: int  # images trained on in this epoch (all ranks)
    score: float | None  # evaluation score (mAP@0.5) when evaluated this epoch
    best_epoch: int  # epoch of the best checkpoint so far (0 = none)


def input_size(resolution: int, width: int, height: int) -> tuple[int, int]:
    """Model input for frames of ``width`` x ``height``: ``resolution`` wide (or high), aspect kept, multiples of 16."""
    scale = resolution / max(width, height)
    return max(16, round(width * scale / 16) * 16), max(16, round(height * scale / 16) * 16)


# --------------------------------------------------------------------------- data


def _objects(annotations: Sequence[Annotation], names: Sequence[str], sx: float, sy: float) -> np.ndarray:
    """Annotations in frame pixels to [K, 5] (category, cx, cy, w, h) in input pixels; unknown categories skipped."""
    rows = []
    for a in annotations:
        if a.category not in names:
            continue
        cx, cy = a.centre
        w, h = (a.box[2], a.box[3]) if a.box is not None else (POINT_SIZE / sx, POINT_SIZE / sy)
        rows.append((names.index(a.category), cx * sx, cy * sy, w * sx, h * sy))
    return np.asarray(rows, np.float64).reshape(-1, 5)


def _prepare_samples(
    samples: Sequence[Sample], names: Sequence[str], width: int, height: int
) -> tuple[np.ndarray, list[np.ndarray]]:
    """uint8 [N, 3, H, W] model inputs (x 255 of what ``prepare`` gives) and per-image object arrays."""
    spec = model_pb2.ModelInput(width=width, height=height, color_order=model_pb2.COLOR_ORDER_RGB)
    images = np.empty((len(samples), 3, height, width), np.uint8)
    objects = []
    for i, sample in enumerate(samples):
        tensor, transform = prepare(Frame(sample.image, "bgr"), spec, model_pb2.RESCALE_TYPE_PAD)
        np.rint(tensor * 255.0, out=tensor)
        images[i] = tensor  # exact: prepare's values are k/255
        objects.append(_objects(sample.annotations, names, transform.scale_x, transform.scale_y))
    return images, objects


def _images(images: np.ndarray, indices: np.ndarray, flips: np.ndarray) -> torch.Tensor:
    """The float model inputs of ``indices``, mirrored where ``flips`` says (rl, ud per image).

    One numpy pass per image from the uint8 cache, flips as strided views: several times cheaper
    than a torch gather, flip and conversion, and cheaper than gathering cached float32 tensors.
    """
    batch = np.empty((len(indices), *images.shape[1:]), np.float32)
    for row, (index, (rl, ud)) in enumerate(zip(indices.tolist(), flips.tolist(), strict=True)):
        view = images[index]
        if rl:
            view = view[:, :, ::-1]
        if ud:
            view = view[:, ::-1, :]
        np.multiply(view, _SCALE, out=batch[row])  # float32(k) * float32(1/255), exactly as prepare()
    return torch.from_numpy(batch)


def repeat_factors(objects: Sequence[np.ndarray], classes: int, threshold: float) -> np.ndarray:
    """Per image, how many times an epoch shows it on average: at least 1, and for an image holding a
    category that a share s < ``threshold`` of the images hold, sqrt(threshold / s) (its rarest
    category decides; LVIS's repeat factor sampling)."""
    factors = np.ones(len(objects))
    if threshold <= 0 or not objects:
        return factors
    held = [np.unique(o[:, 0].astype(np.int64)) for o in objects]
    share = np.bincount(np.concatenate(held), minlength=classes) / len(objects)
    per_category = np.sqrt(threshold / np.maximum(share, 1e-12))
    for image, categories in enumerate(held):
        if categories.size:
            factors[image] = max(1.0, float(per_category[categories].max()))
    return factors


def epoch_order(
    rng: np.random.Generator, factors: np.ndarray, length: int, flip_chance: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """One epoch: ``length`` image indices in training order and their flips (rl, ud per position).

    An image of factor f appears floor(f) times, once more with probability f - floor(f); the
    epoch keeps a fixed length (the learning-rate schedule counts its steps in advance), so a draw
    that comes out longer or shorter loses or repeats random positions. Factors of 1 draw exactly
    what a plain shuffle does.
    """
    count = len(factors)
    if length == count and bool((factors == 1.0).all()):
        order = rng.permutation(count)
        return order, (rng.random((count, 2)) < flip_chance)[order]
    whole = np.floor(factors)
    counts = (whole + (rng.random(count) < factors - whole)).astype(np.int64)
    order = np.resize(rng.permutation(np.repeat(np.arange(count), counts)), length)
    return order, rng.random((length, 2)) < flip_chance


def encode_batch(
    objects: Sequence[np.ndarray], flips: np.ndarray, classes: int, width: int, height: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``model.encode`` for a batch in one go: heatmap [B,C,h,w], size [B,2,h,w], offset [B,2,h,w], mask [B,h,w].

    ``flips`` [B, 2] says per image whether it is mirrored left-right and up-down. Flipped centres
    are re-encoded rather than the maps flipped, as a flip moves centres across cell borders.
    Same arithmetic as ``encode`` (given Python floats), so the maps are bit-identical to it.
    """
    cols, rows = width // STRIDE, height // STRIDE
    count = len(objects)
    heatmap = np.zeros((count, classes, rows, cols), np.float32)
    size = np.zeros((count, 2, rows, cols), np.float32)
    offset = np.zeros((count, 2, rows, cols), np.float32)
    mask = np.zeros((count, rows, cols), np.float32)
    image = np.repeat(np.arange(count), [len(o) for o in objects])
    if image.size == 0:
        return heatmap, size, offset, mask
    every = np.concatenate(objects)
    cx = np.where(flips[image, 0], width - every[:, 1], every[:, 1])
    cy = np.where(flips[image, 1], height - every[:, 2], every[:, 2])
    gx, gy = cx / STRIDE, cy / STRIDE
    col, row = np.floor(gx).astype(np.int64), np.floor(gy).astype(np.int64)
    inside = (col >= 0) & (col < cols) & (row >= 0) & (row < rows)  # no peak for centres outside the input
    image, category, col, row = image[inside], every[inside, 0].astype(np.int64), col[inside], row[inside]
    w, h, gx, gy = every[inside, 3], every[inside, 4], gx[inside], gy[inside]
    # encode's _sigma in float64, rounded to float32 where encode's float32 maps round it
    sx, sy = np.maximum(0.7, w / STRIDE / 6.0), np.maximum(0.7, h / STRIDE / 6.0)
    dx = np.arange(cols, dtype=np.float32)[None, None, :] - col.astype(np.float32)[:, None, None]
    dy = np.arange(rows, dtype=np.float32)[None, :, None] - row.astype(np.float32)[:, None, None]
    gaussians = np.exp(
        -(dx**2) / (2 * sx * sx).astype(np.float32)[:, None, None]
        - (dy**2) / (2 * sy * sy).astype(np.float32)[:, None, None]
    )
    planes = heatmap.reshape(count * classes, rows, cols)
    for k, plane in enumerate((image * classes + category).tolist()):  # a loop: np.maximum.at is 15x slower
        np.maximum(planes[plane], gaussians[k], out=planes[plane])
    size[image, 0, row, col], size[image, 1, row, col] = w, h
    offset[image, 0, row, col], offset[image, 1, row, col] = gx - col, gy - row
    mask[image, row, col] = 1.0
    return heatmap, size, offset, mask


# --------------------------------------------------------------------------- checkpoints


def _write_atomically(value: Mapping[str, Any], path: Path) -> None:
    """torch.save so that readers (and a resume after kill -9) see the old or the new file."""
    buffer = io.BytesIO()
    torch.save(dict(value), buffer)
    write_atomically(path, buffer.getvalue())


def _cpu_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.detach().cpu().clone() for key, value in model.state_dict().items()}


def _load_matching(model: CenterNet, state: Mapping[str, torch.Tensor]) -> None:
    """Copy the entries of ``state`` whose name and shape fit; others (a head for another class count) stay new."""
    own = model.state_dict()
    fitting = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not fitting:
        raise ValueError("base_state shares no parameter with this model (another width or architecture?)")
    model.load_state_dict(fitting, strict=False)


# --------------------------------------------------------------------------- the run


class TrainingRun:
    """One training of a CenterNet on ``samples`` for ``categories`` (names, in output order) into ``folder``.

    ``run`` resumes from ``folder/last.pt`` when it exists. ``evaluate`` scores the model (higher is
    better) every ``evaluate_every`` epochs and after the last; ``best.pt`` keeps the best scored
    model, and until the first score (or without ``evaluate``) the latest one. A ``last.pt`` made by
    another run (other hyperparameters, samples or ranks) is refused, or with ``restart_foreign``
    discarded with ``best.pt`` and the run trained from its first epoch.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        categories: Sequence[str],
        hyper: Hyperparameters,
        folder: Path,
        *,
        base_state: Mapping[str, torch.Tensor] | None = None,
        evaluate: Callable[[CenterNet], float] | None = None,
        evaluate_every: int = 5,
        restart_foreign: bool = False,
    ) -> None:
        if not samples:
            raise ValueError("training needs at least one sample")
        if not categories:
            raise ValueError("training needs at least one category")
        if (
            hyper.epochs < 1
            or hyper.batch_size < 1
            or hyper.resolution < 16
            or hyper.width < 2
            or not 0.0 <= hyper.repeat_threshold <= 1.0
        ):
            raise ValueError(f"hyperparameters out of range: {hyper}")
        if evaluate_every < 1:
            raise ValueError(f"evaluate_every must be at least 1, got {evaluate_every}")
        self.samples = samples
        self.categories = list(categories)
        self.hyper = hyper
        self.folder = Path(folder)
        self.base_state = base_state
        self.evaluate = evaluate
        self.evaluate_every = evaluate_every
        self.restart_foreign = restart_foreign
        frame_h, frame_w = samples[0].image.shape[:2]
        self._input_size = input_size(hyper.resolution, frame_w, frame_h)
        self._data: tuple[np.ndarray, list[np.ndarray]] | None = None

    @property
    def input_size(self) -> tuple[int, int]:
        """(width, height) of the model input."""
        return self._input_size

    def best_model(self) -> CenterNet | None:
        """The model in ``folder/best.pt`` (eval mode, CPU); None before the first checkpoint."""
        path = self.folder / BEST
        if not path.exists():
            return None
        saved = torch.load(path, map_location="cpu", weights_only=True)
        model = CenterNet(int(saved["classes"]), int(saved["width"]))
        model.load_state_dict(saved["state_dict"])
        return model.eval()

    def _prepared(self) -> tuple[np.ndarray, list[np.ndarray]]:
        if self._data is None:
            self._data = _prepare_samples(self.samples, self.categories, *self._input_size)
        return self._data

    def _identity(self, world_size: int) -> dict[str, Any]:
        """What a checkpoint must have been made with to be resumed by this run."""
        return {
            "hyper": asdict(self.hyper),
            "categories": self.categories,
            "samples": len(self.samples),
            "input_size": list(self._input_size),
            "world_size": world_size,
        }

    def _resume_point(self, workers: distributed.Workers) -> dict[str, Any] | None:
        """``last.pt`` read by rank 0 and handed to every rank; None to start afresh."""
        checkpoint = None
        if workers.leader and (self.folder / LAST).exists():
            checkpoint = torch.load(self.folder / LAST, map_location="cpu", weights_only=True)
        checkpoint = workers.broadcast(checkpoint)
        if checkpoint is None:
            return None
        wanted = self._identity(workers.size)
        if checkpoint.get("version") == _CHECKPOINT_VERSION and checkpoint.get("identity") == wanted:
            return checkpoint
        if not self.restart_foreign:
            raise ValueError(
                f"{self.folder / LAST} belongs to another run ({checkpoint.get('identity')}); "
                f"this one is {wanted}: use an empty folder"
            )
        if workers.leader:
            log.warning(
                "checkpoint of another run discarded; training from the first epoch",
                folder=str(self.folder),
                found=checkpoint.get("identity"),
                wanted=wanted,
            )
            for name in (LAST, BEST):  # a stop before the first epoch must not leave the other run's model
                (self.folder / name).unlink(missing_ok=True)
        return None

    def run(
        self,
        progress: Callable[[EpochReport], None] | None = None,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> None:
        """Train to the last epoch, or until ``should_stop()`` (checked between batches) says so.

        On a stop the epoch in progress is dropped: ``last.pt`` and ``best.pt`` stay as the last
        completed epoch left them. ``progress`` is called after every epoch (on rank 0 only).
        """
        workers = distributed.workers()
        self.folder.mkdir(parents=True, exist_ok=True)
        images, objects = self._prepared()
        checkpoint = self._resume_point(workers)
        # Own RNG streams, so the caller's torch state is left alone and a resume restores ours.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.hyper.seed)
            self._train(workers, images, objects, checkpoint, progress, should_stop)
        workers.barrier()  # rank 0 has written: best_model() sees the same file on every rank

    def _train(
        self,
        workers: distributed.Workers,
        images: np.ndarray,
        objects: list[np.ndarray],
        checkpoint: dict[str, Any] | None,
        progress: Callable[[EpochReport], None] | None,
        should_stop: Callable[[], bool],
    ) -> None:
        hyper, classes = self.hyper, len(self.categories)
        width, height = self._input_size
        core = CenterNet(classes, hyper.width)
        if checkpoint is None and self.base_state is not None:
            _load_matching(core, self.base_state)
        factors = repeat_factors(objects, classes, hyper.repeat_threshold)
        count = round(float(factors.sum()))  # images an epoch shows, repeats included
        padded = -(-count // workers.size) * workers.size  # every rank gets as many images
        per_rank = max(1, hyper.batch_size // workers.size)  # the global batch stays batch_size
        shard = padded // workers.size
        batches = -(-shard // per_rank)

        core.to(workers.device)
        model = workers.wrap(core)
        optimizer = torch.optim.AdamW(model.parameters(), lr=hyper.learning_rate, weight_decay=1e-4)
        schedule = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, hyper.learning_rate, total_steps=hyper.epochs * batches, pct_start=0.15
        )
        rng = np.random.default_rng(hyper.seed)
        done, losses, best_epoch, best_score = 0, [], 0, None
        if checkpoint is not None:
            core.load_state_dict(checkpoint["model"])
            optimizer.load_state_dict(checkpoint["optimizer"])
            schedule.load_state_dict(checkpoint["schedule"])
            rng.bit_generator.state = checkpoint["numpy_rng"]
            torch.set_rng_state(checkpoint["torch_rng"])
            done, losses = int(checkpoint["epoch"]), list(checkpoint["losses"])
            best_epoch, best_score = int(checkpoint["best_epoch"]), checkpoint["best_score"]

        flip_chance = np.array([0.5 * hyper.flip_rl, 0.5 * hyper.flip_ud])
        model.train()
        for epoch in range(done + 1, hyper.epochs + 1):
            started = time.perf_counter()
            # The same global draws on every rank; each trains its own slice.
            order, flips = epoch_order(rng, factors, count, flip_chance)
            # padded by repeating its start
            order = np.resize(order, padded)[workers.rank :: workers.size]
            flips = np.resize(flips, (padded, 2))[workers.rank :: workers.size]
            total = 0.0
            for first in range(0, shard, per_rank):
                if workers.any(should_stop()):
                    return
                indices = order[first : first + per_rank]
                batch_flips = flips[first : first + per_rank]
                heat, size, offset, mask = (
                    torch.from_numpy(x).to(workers.device, non_blocking=True)
                    for x in encode_batch([objects[i] for i in indices], batch_flips, classes, width, height)
                )
                batch = _images(images, indices, batch_flips).to(workers.device, non_blocking=True)
                value, _ = loss(model(batch), heat, size, offset, mask)
                optimizer.zero_grad(set_to_none=True)
                value.backward()
                optimizer.step()
                schedule.step()
                total += float(value.detach())
            total, steps = workers.sum([total, batches])
            losses.append(total / steps)

            if not workers.leader:
                continue
            score = self._score(core, epoch)
            if best_score is None or (score is not None and score > best_score):
                best_epoch, best_score = epoch, score
                _write_atomically(
                    {
                        "classes": classes,
                        "width": hyper.width,
                        "input_size": list(self._input_size),
                        "epoch": epoch,
                        "score": score,
                        "state_dict": _cpu_state(core),
                    },
                    self.folder / BEST,
                )
            # After best.pt: a crash between the two redoes this epoch and so rewrites both.
            _write_atomically(
                {
                    "version": _CHECKPOINT_VERSION,
                    "identity": self._identity(workers.size),
                    "epoch": epoch,
                    "model": _cpu_state(core),
                    "optimizer": optimizer.state_dict(),
                    "schedule": schedule.state_dict(),
                    "numpy_rng": rng.bit_generator.state,
                    "torch_rng": torch.get_rng_state(),
                    "losses": losses,
                    "best_epoch": best_epoch,
                    "best_score": best_score,
                },
                self.folder / LAST,
            )
            if progress is not None:
                seconds = time.perf_counter() - started
                progress(EpochReport(epoch, hyper.epochs, losses[-1], seconds, padded, score, best_epoch))

    def _score(self, core: CenterNet, epoch: int) -> float | None:
        """``evaluate(core)`` in eval mode on evaluation epochs; None on the others."""
        if self.evaluate is None or (epoch % self.evaluate_every and epoch != self.hyper.epochs):
            return None
        core.eval()
        try:
            with torch.no_grad():
                return float(self.evaluate(core))
        finally:
            core.train()


def sample_losses(
    model: CenterNet, samples: Sequence[Sample], categories: Sequence[str], size: tuple[int, int]
) -> np.ndarray:
    """The training loss of ``model`` on each of ``samples`` (their annotations the ground truth, no flips):
    how wrong the model is on each frame, per object. ``size`` is the model input (width, height)."""
    images, objects = _prepare_samples(samples, categories, *size)
    unflipped = np.zeros((1, 2), bool)
    values = np.empty(len(samples))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for i, held in enumerate(objects):  # one at a time: the loss is normalised by the batch's objects
                heat, sizes, offset, mask = (
                    torch.from_numpy(x) for x in encode_batch([held], unflipped, len(categories), *size)
                )
                value, _ = loss(model(_images(images, np.array([i]), unflipped)), heat, sizes, offset, mask)
                values[i] = float(value)
    finally:
        model.train(was_training)
    return values


def train(
    samples: Sequence[Sample],
    categories: Sequence[str],
    epochs: int,
    batch_size: int = 16,
    lr: float = 3e-3,
    resolution: int = 320,
    flip_rl: bool = True,
    flip_ud: bool = True,
    seed: int = 0,
    progress: Progress | None = None,
    width: int = 24,
) -> CenterNet:
    """Train a CenterNet on ``samples`` for ``categories`` (names, in output order); deterministic per seed.

    A :class:`TrainingRun` in a temporary folder. The model's input is ``input_size(resolution, ...)``
    of the first sample's frame size.
    """
    hyper = Hyperparameters(resolution, epochs, batch_size, lr, flip_rl, flip_ud, width, seed)
    with tempfile.TemporaryDirectory(prefix="visionloop-train-") as folder:
        run = TrainingRun(samples, categories, hyper, Path(folder))
        run.run(None if progress is None else lambda report: progress(report.epoch, report.loss))
        model = run.best_model()
    assert model is not None  # every epoch ran and, without evaluate, best is the last
    return model
