"""The reference trainer on synthetic frames across torchrun workers: a self-contained job for the
multi-worker tests and the trainer benchmark::

    torchrun --standalone --nproc_per_node=2 -m visionloop.testing.synthetic.distributed \\
        --seed 0 --count 96 --epochs 10 --out /tmp/job
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

import torch
import torch.distributed as dist

from visionloop.server.trainer.reference.distributed import workers
from visionloop.server.trainer.reference.predict import map50_evaluator
from visionloop.server.trainer.reference.train import Hyperparameters, TrainingRun
from visionloop.testing.synthetic import world


def main(argv: Sequence[str] | None = None) -> int:
    """Train on synthetic world frames (every rank generates the same ones) and write model.pt + result.json."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--seed", type=int, default=0, help="data set and training seed")
    parser.add_argument("--count", type=int, default=96, help="training frames")
    parser.add_argument("--holdout", type=int, default=32, help="held-out frames for mAP@0.5 (after the training ones)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=16, help="global batch, split over the ranks")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--resolution", type=int, default=160)
    parser.add_argument("--width", type=int, default=24, help="model width")
    parser.add_argument("--preset", default="standard", help="world difficulty preset: easy, standard, hard")
    parser.add_argument("--out", type=Path, required=True, help="folder for checkpoints, model.pt and result.json")
    args = parser.parse_args(argv)

    config = world.preset(args.preset)
    samples = world.generate_samples(args.count, seed=args.seed, config=config)
    held_out = world.generate_samples(args.holdout, seed=args.seed, config=config, start=args.count)
    hyper = Hyperparameters(
        resolution=args.resolution,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        width=args.width,
        seed=args.seed,
    )
    categories = world.categories(config)
    names = [name for name, _ in categories]
    this = workers()
    try:
        started = time.perf_counter()
        probe = TrainingRun(samples, names, hyper, args.out / "checkpoints")
        score = map50_evaluator(held_out, categories, probe.input_size)
        losses: list[float] = []
        probe.run(progress=lambda report: losses.append(report.loss))
        seconds = time.perf_counter() - started
        if this.leader:
            model = probe.best_model()
            assert model is not None  # every epoch ran, so the last one was checkpointed
            torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, args.out / "model.pt")
            result = {
                "workers": this.size,
                "epochs": args.epochs,
                "loss": losses[-1] if losses else None,
                "map50": score(model),
                "seconds": seconds,
                "input_size": list(probe.input_size),
                "categories": names,
            }
            (args.out / "result.json").write_text(json.dumps(result, indent=2) + "\n")
            print(json.dumps(result))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return 0


def leave(code: int) -> NoReturn:
    """End a rank's process without the interpreter's teardown, its outputs flushed.

    A gloo worker thread may still be releasing the last collective's work (our final barrier,
    holding earlier all-reduces' tensors) when the main thread returns: if the interpreter is
    already finalizing, the thread cannot take the GIL to drop the tensors' Python objects, and
    the process aborts ("terminate called without an active exception"; core dump: ``runLoop`` ->
    ``~AsyncBarrierWork`` -> ``decref_pyobject`` -> ``take_gil`` -> ``pthread_exit``). About one
    run in 100-300 on a busy 2-core machine, and torchrun then reports the finished job failed.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    leave(main())
