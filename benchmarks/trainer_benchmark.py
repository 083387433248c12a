"""Trainer benchmark: the reference TrainingRun's accuracy within a wall budget, and its speed next to
a bare PyTorch loop over the same model and data.

1. (a) accuracy: a ``TrainingRun`` on frames of the world's ``standard`` preset, evaluated on
   held-out frames of the same preset (mAP@0.5 through ``predict``, i.e. the detector's decoding);
   training stops at ``--budget`` seconds at the latest. Target: mAP@0.5 >= 0.8.
2. (b) throughput: images/s of ``TrainingRun`` (flip augmentation, per-batch target encoding,
   stop checks, a checkpoint every epoch) next to a bare loop (the same model, the same prepared
   tensors, the same batch size; targets encoded once up front; forward, loss, backward, step),
   in ``--rounds`` adjacent pairs; the median of the pairs' ratios. Target: ratio >= 0.9.

Run from the repository root::

    .venv/bin/python -m benchmarks.trainer_benchmark
    .venv/bin/python -m benchmarks.trainer_benchmark --only throughput --json trainer.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from visionloop.common.v1 import model_pb2
from visionloop.lib.centernet.model import POINT_SIZE, CenterNet, Target, encode, loss
from visionloop.lib.evaluation import evaluate
from visionloop.lib.preprocess import Frame, prepare
from visionloop.server.trainer.reference.predict import map50_evaluator, predict, truths
from visionloop.server.trainer.reference.train import (
    REPEAT_THRESHOLD,
    EpochReport,
    Hyperparameters,
    TrainingRun,
    input_size,
)
from visionloop.testing.synthetic import world

MAP_TARGET = 0.8  # (a) mAP@0.5 on held-out frames
RATIO_TARGET = 0.9  # (b) TrainingRun images/s over the bare loop's
BUDGET_SHARE = 0.85  # (a) of --budget for training epochs; the rest for evaluations
MIN_EPOCHS = 6  # fewer one-cycle epochs of 400 frames fall off sharply (0.72 mAP@0.5 at 4, 0.88 at 6)


def check(condition: bool, message: str) -> None:
    """Like assert, but not stripped by python -O: a benchmark that measured the wrong thing must fail."""
    if not condition:
        raise RuntimeError(message)


def load() -> float:
    """1-minute load average: how busy the machine was (other work swings every number here)."""
    return os.getloadavg()[0]


# --------------------------------------------------------------------------- (a) accuracy


def fitted_epochs(args: argparse.Namespace, images_per_s: float) -> int:
    """Epochs that fit ``--budget`` at the measured speed (a complete one-cycle schedule learns more
    than a longer one cut short), leaving ``BUDGET_SHARE`` of the budget for the evaluations."""
    fitting = int(BUDGET_SHARE * args.budget * images_per_s / args.frames)
    return max(MIN_EPOCHS, min(args.max_epochs, fitting))


def accuracy(args: argparse.Namespace, hyper: Hyperparameters, workdir: Path) -> dict[str, Any]:
    config = world.preset(args.preset)
    categories = world.categories(config)
    names = [name for name, _ in categories]
    started = time.perf_counter()
    samples = world.generate_samples(args.frames, seed=args.seed, config=config)
    held_out = world.generate_samples(args.holdout, seed=args.seed, config=config, start=args.frames)
    generated = time.perf_counter() - started

    size = input_size(hyper.resolution, config.width, config.height)
    run = TrainingRun(
        samples,
        names,
        hyper,
        workdir / "accuracy",
        evaluate=map50_evaluator(held_out, categories, size),
        evaluate_every=args.evaluate_every,
    )
    reports: list[EpochReport] = []
    deadline = time.perf_counter() + args.budget
    with tqdm(total=hyper.epochs, desc="(a) training", unit="epoch", leave=False) as bar:

        def progress(report: EpochReport) -> None:
            reports.append(report)
            bar.set_postfix(loss=f"{report.loss:.3f}", map50="" if report.score is None else f"{report.score:.3f}")
            bar.update()

        started = time.perf_counter()
        run.run(progress, should_stop=lambda: time.perf_counter() > deadline)
        trained = time.perf_counter() - started
    model = run.best_model()
    check(model is not None, "no checkpoint after training")
    assert model is not None
    predictions = predict(model, [s.image for s in held_out], categories, run.input_size)
    result = evaluate([truths(s.annotations) for s in held_out], predictions, names)
    best = max((r for r in reports if r.score is not None), key=lambda r: r.score or 0.0, default=None)
    return {
        "preset": args.preset,
        "frames": args.frames,
        "held_out": args.holdout,
        "input_size": list(run.input_size),
        "hyper": asdict(hyper),
        "generate_seconds": generated,
        "train_seconds": trained,
        "epochs_done": len(reports),
        "stopped_by_budget": len(reports) < hyper.epochs,
        "budget_seconds": args.budget,
        "best_epoch": reports[-1].best_epoch if reports else 0,
        "scores": {r.epoch: r.score for r in reports if r.score is not None},
        "losses": [r.loss for r in reports],
        "map50": result.map50,
        "map50_95": result.map50_95,
        "ap50": {name: c.ap50 for name, c in result.classes.items()},
        "best_score_in_training": None if best is None else best.score,
        "met": result.map50 >= MAP_TARGET,
    }


# --------------------------------------------------------------------------- (b) throughput


def bare_inputs(
    samples: Sequence[world.Sample], names: Sequence[str], size: tuple[int, int]
) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """The detector's prepared tensors (float32) and every frame's targets, encoded once."""
    width, height = size
    spec = model_pb2.ModelInput(width=width, height=height, color_order=model_pb2.COLOR_ORDER_RGB)
    tensors, encoded = [], []
    for sample in samples:
        tensor, transform = prepare(Frame(sample.image, "bgr"), spec, model_pb2.RESCALE_TYPE_PAD)
        sx, sy = transform.scale_x, transform.scale_y
        targets = []
        for a in sample.annotations:
            cx, cy = a.centre
            w, h = (a.box[2] * sx, a.box[3] * sy) if a.box is not None else (POINT_SIZE, POINT_SIZE)
            targets.append(Target(names.index(a.category), cx * sx, cy * sy, w, h))
        tensors.append(torch.from_numpy(tensor))
        encoded.append(encode(targets, len(names), width, height))
    maps = tuple(torch.from_numpy(np.stack([getattr(e, f) for e in encoded])) for f in ("heatmap", "size", "offset"))
    mask = torch.from_numpy(np.stack([e.mask for e in encoded]))
    return torch.stack(tensors), (*maps, mask)


def bare_loop(
    images: torch.Tensor, targets: tuple[torch.Tensor, ...], classes: int, hyper: Hyperparameters, epochs: int
) -> float:
    """images/s of the plainest loop over the same model: forward, loss, backward, step."""
    torch.manual_seed(hyper.seed)
    model = CenterNet(classes, hyper.width).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=hyper.learning_rate, weight_decay=1e-4)
    order = torch.from_numpy(np.random.default_rng(hyper.seed).permutation(len(images)))
    started = time.perf_counter()
    for _ in range(epochs):
        for first in range(0, len(images), hyper.batch_size):
            index = order[first : first + hyper.batch_size]
            value, _ = loss(model(images[index]), *(t[index] for t in targets))
            optimizer.zero_grad(set_to_none=True)
            value.backward()
            optimizer.step()
            float(value.detach())
    return epochs * len(images) / (time.perf_counter() - started)


def training_run(samples: Sequence[world.Sample], names: Sequence[str], hyper: Hyperparameters, folder: Path) -> float:
    """images/s of TrainingRun over its epochs (each epoch's time includes its checkpoint)."""
    reports: list[EpochReport] = []
    TrainingRun(samples, names, hyper, folder).run(reports.append)
    return sum(r.images for r in reports) / sum(r.seconds for r in reports)


def throughput(args: argparse.Namespace, hyper: Hyperparameters, workdir: Path) -> dict[str, Any]:
    config = world.preset(args.preset)
    names = [name for name, _ in world.categories(config)]
    samples = world.generate_samples(args.throughput_frames, seed=args.seed + 1, config=config)
    timed = replace(hyper, epochs=args.throughput_epochs)
    size = input_size(hyper.resolution, config.width, config.height)
    images, targets = bare_inputs(samples, names, size)
    bare_loop(images[: 2 * hyper.batch_size], tuple(t[: 2 * hyper.batch_size] for t in targets), len(names), timed, 1)
    bare, run = [], []
    for round_ in tqdm(range(args.rounds), desc="(b) bare loop / TrainingRun rounds", leave=False):
        # Adjacent pairs, in alternating order: a load change hits both sides of a pair alike.
        for side in ("bare", "run") if round_ % 2 == 0 else ("run", "bare"):
            if side == "bare":
                bare.append(bare_loop(images, targets, len(names), timed, args.throughput_epochs))
            else:
                run.append(training_run(samples, names, timed, workdir / f"throughput-{round_}"))
    ratio = statistics.median(r / b for r, b in zip(run, bare, strict=True))
    return {
        "frames": len(samples),
        "epochs_per_round": args.throughput_epochs,
        "input_size": list(size),
        "batch_size": hyper.batch_size,
        "bare_images_per_s": bare,
        "run_images_per_s": run,
        "ratio": ratio,  # median of the rounds' TrainingRun / bare
        "ratio_of_best": max(run) / max(bare),
        "met": ratio >= RATIO_TARGET,
    }


def calibrate(args: argparse.Namespace, hyper: Hyperparameters, workdir: Path) -> float:
    """TrainingRun images/s over one epoch of a few frames, when (b) did not run."""
    config = world.preset(args.preset)
    names = [name for name, _ in world.categories(config)]
    samples = world.generate_samples(min(64, args.frames), seed=args.seed + 2, config=config)
    return training_run(samples, names, replace(hyper, epochs=1), workdir / "calibration")


# --------------------------------------------------------------------------- report


def table(report: dict[str, Any]) -> str:
    def verdict(met: bool) -> str:
        return "ok" if met else "MISS"

    lines = [f"{'measure':<58} {'value':>10}  target"]
    if "accuracy" in report:
        a = report["accuracy"]
        hyper = a["hyper"]
        w, h = a["input_size"]
        lines += [
            f"{'(a) mAP@0.5, ' + str(a['held_out']) + ' held-out ' + a['preset'] + ' frames':<58} "
            f"{a['map50']:>10.3f}  >= {MAP_TARGET} {verdict(a['met'])}",
            f"{'    mAP@0.5:0.95':<58} {a['map50_95']:>10.3f}",
            *(f"{'    AP50 ' + name:<58} {value:>10.3f}" for name, value in a["ap50"].items()),
            f"{'    training seconds (epochs done / planned)':<58} {a['train_seconds']:>10.0f}  "
            f"{a['epochs_done']}/{hyper['epochs']} epochs, best epoch {a['best_epoch']}"
            + (" (stopped by --budget)" if a["stopped_by_budget"] else ""),
            f"{'    setup':<58} {'':>10}  {a['frames']} frames at {w}x{h}, width {hyper['width']}, "
            f"batch {hyper['batch_size']}, lr {hyper['learning_rate']:g}",
        ]
    if "throughput" in report:
        t = report["throughput"]
        w, h = t["input_size"]
        rounds = " / ".join(f"{v:.1f}" for v in t["bare_images_per_s"])
        lines += [
            f"{'(b) bare PyTorch loop, images/s (best of rounds)':<58} {max(t['bare_images_per_s']):>10.1f}  "
            f"rounds {rounds}",
            f"{'    TrainingRun, images/s (best of rounds)':<58} {max(t['run_images_per_s']):>10.1f}  "
            f"rounds {' / '.join(f'{v:.1f}' for v in t['run_images_per_s'])}",
            f"{'    ratio (median of paired rounds)':<58} {t['ratio']:>10.2f}  >= {RATIO_TARGET} {verdict(t['met'])}"
            f"  (best over best: {t['ratio_of_best']:.2f})",
            f"{'    setup':<58} {'':>10}  {t['frames']} frames at {w}x{h}, batch {t['batch_size']}, "
            f"{t['epochs_per_round']} epochs per round",
        ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="standard", help="world preset (default standard)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--frames", type=int, default=400, help="(a) training frames (default 400)")
    parser.add_argument("--holdout", type=int, default=100, help="(a) held-out frames (default 100)")
    parser.add_argument(
        "--budget", type=float, default=180.0, help="(a) training seconds: epochs are fitted to it, and it stops there"
    )
    parser.add_argument(
        "--epochs", type=int, default=0, help="(a) epochs; 0 (default): as many as fit --budget at (b)'s speed"
    )
    parser.add_argument("--max-epochs", type=int, default=30, help="(a) at most this many fitted epochs")
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--width", type=int, default=24, help="model width")
    parser.add_argument(
        "--repeat-threshold",
        type=float,
        default=REPEAT_THRESHOLD,
        help=f"rare-category oversampling (default {REPEAT_THRESHOLD}, the trainer's; 0: off)",
    )
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-2, help="peak learning rate")
    parser.add_argument("--evaluate-every", type=int, default=5, help="(a) epochs between evaluations")
    parser.add_argument("--throughput-frames", type=int, default=128, help="(b) frames per round (default 128)")
    parser.add_argument("--throughput-epochs", type=int, default=1, help="(b) epochs per round (default 1)")
    parser.add_argument("--rounds", type=int, default=6, help="(b) rounds of one bare loop and one run (default 6)")
    parser.add_argument("--only", choices=("accuracy", "throughput"), help="run one part only")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the numbers as JSON")
    args = parser.parse_args(argv)
    if min(args.frames, args.holdout, args.max_epochs, args.throughput_frames, args.rounds) < 1 or args.epochs < 0:
        parser.error("counts must be at least 1")
    hyper = Hyperparameters(
        resolution=args.resolution,
        epochs=max(1, args.epochs),
        batch_size=args.batch_size,
        learning_rate=args.lr,
        width=args.width,
        seed=args.seed,
        repeat_threshold=args.repeat_threshold,
    )
    report: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpus": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_before": load(),
    }
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="visionloop-trainer-bench-") as tmp:
        if args.only in (None, "throughput"):
            report["throughput"] = throughput(args, hyper, Path(tmp))
        if args.only in (None, "accuracy"):
            if not args.epochs:
                speed = (
                    max(report["throughput"]["run_images_per_s"])
                    if "throughput" in report
                    else calibrate(args, hyper, Path(tmp))
                )
                hyper = replace(hyper, epochs=fitted_epochs(args, speed))
            report["accuracy"] = accuracy(args, hyper, Path(tmp))
    report["seconds"] = time.perf_counter() - started
    report["load_after"] = load()
    print(
        f"\nVisionLoop trainer benchmark: reference CenterNet, {report['cpus']} CPUs ({report['threads']} torch "
        f"threads), torch {report['torch']}, Python {report['python']}; load average {report['load_before']:.1f} "
        f"before, {report['load_after']:.1f} after\n",
    )
    print(table(report))
    print(f"\ntotal {report['seconds']:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
