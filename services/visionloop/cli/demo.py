"""``visionloop demo`` and ``visionloop experiment``."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, TypeVar

import click

from visionloop.demo.config import (
    ACQUISITIONS,
    ARMS,
    BUDGETS,
    EXPERIMENT_ARMS,
    EXPERIMENT_HELD_OUT,
    FIELDS,
    ORACLE,
    RANDOM_DRAWS,
    LoopConfig,
)
from visionloop.runtime.config import LogFormat
from visionloop.runtime.logging import configure_logging

F = TypeVar("F", bound=Callable[..., Any])
DEFAULTS = LoopConfig()


def _loop_options(rounds: int, held_out: int = DEFAULTS.held_out) -> Callable[[F], F]:
    """The options both commands share (defaults: ``LoopConfig``, but ``rounds`` and ``held_out``)."""

    def decorate(command: F) -> F:
        for option in reversed(
            [
                click.option("--rounds", type=click.IntRange(1), default=rounds, show_default=True, help="Rounds."),
                click.option(
                    "--robots", type=click.IntRange(1, 64), default=DEFAULTS.robots, show_default=True, help="Robots."
                ),
                click.option(
                    "--frames",
                    type=click.IntRange(1),
                    default=DEFAULTS.frames,
                    show_default=True,
                    help="Frames each robot streams per round.",
                ),
                click.option(
                    "--fps",
                    type=click.FloatRange(0, min_open=True),
                    default=DEFAULTS.fps,
                    show_default=True,
                    help="Camera rate of each robot.",
                ),
                click.option(
                    "--bootstrap",
                    type=click.IntRange(1),
                    default=DEFAULTS.bootstrap,
                    show_default=True,
                    help="Frames the robots upload in round 1, before there is a model.",
                ),
                click.option(
                    "--held-out",
                    type=click.IntRange(1),
                    default=held_out,
                    show_default=True,
                    help="Frames every round's model is scored on (never uploaded).",
                ),
                click.option(
                    "--epochs",
                    type=click.IntRange(1),
                    default=DEFAULTS.epochs,
                    show_default=True,
                    help="Epochs of the first training; later ones make as many image passes over more images.",
                ),
                click.option(
                    "--repeat-threshold",
                    type=click.FloatRange(0, 1),
                    default=DEFAULTS.repeat_threshold,
                    show_default=True,
                    help="The trainer's rare-category oversampling: images of a category fewer than this share "
                    "of the labelled images hold are repeated; 0: every image once an epoch.",
                ),
                click.option(
                    "--preset",
                    type=click.Choice(FIELDS),
                    default=DEFAULTS.preset,
                    show_default=True,
                    help="The synthetic field: a world preset, or mixed (4 easy frames in 5, the others hard).",
                ),
                click.option(
                    "--min-uncertain",
                    type=click.FloatRange(0, 1),
                    default=DEFAULTS.upload_filter.min_uncertain,
                    show_default=True,
                    help="The upload filter's MIN_UNCERTAIN_THRESHOLD.",
                ),
                click.option(
                    "--max-uncertain",
                    type=click.FloatRange(0, 1),
                    default=DEFAULTS.upload_filter.max_uncertain,
                    show_default=True,
                    help="The upload filter's MAX_UNCERTAIN_THRESHOLD.",
                ),
                click.option("--quiet", is_flag=True, help="No progress bars."),
                click.option(
                    "--json", "json_path", type=click.Path(path_type=Path), help="Also write the results here."
                ),
            ]
        ):
            command = option(command)
        return command

    return decorate


def _config(options: dict[str, Any], seed: int) -> LoopConfig:
    try:
        preset = options["preset"]
        upload = replace(
            LoopConfig(preset=preset).upload_filter,
            min_uncertain=options["min_uncertain"],
            max_uncertain=options["max_uncertain"],
        )
        return LoopConfig(
            preset=preset,
            seed=seed,
            rounds=options["rounds"],
            robots=options["robots"],
            frames=options["frames"],
            fps=options["fps"],
            bootstrap=options["bootstrap"],
            held_out=options["held_out"],
            epochs=options["epochs"],
            repeat_threshold=options["repeat_threshold"],
            upload=upload,
        )
    except ValueError as error:
        raise click.UsageError(str(error)) from None


def _torch_threads() -> None:
    """Training uses every core this process may run on; nothing else trains at the same time."""
    import torch

    torch.set_num_threads(max(1, len(os.sched_getaffinity(0))))


@click.command()
@_loop_options(DEFAULTS.rounds)
@click.option(
    "--seed", type=click.IntRange(0), default=0, show_default=True, help="Which field (same seed, same frames)."
)
@click.option(
    "--backend",
    type=click.Choice(["onnxruntime", "triton"]),
    default="onnxruntime",
    show_default=True,
    help="Detection on ONNX Runtime in-process, or through a real tritonserver (CPU, from nvidia-pytriton).",
)
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="An empty folder for the services' state, kept afterwards (default: a temporary one).",
)
@click.option(
    "--validation",
    type=click.IntRange(1),
    default=DEFAULTS.validation,
    show_default=True,
    help="Annotated frames the trainer holds out: the promotion gate compares each new model with the "
    "deployed one on them.",
)
@click.option("--log-level", default="info", show_default=True, help="Of the services' log, DATA_DIR/demo.log.")
@click.option(
    "--budget",
    type=click.FloatRange(0, 1, min_open=True),
    default=DEFAULTS.budget,
    show_default=True,
    help="Images labelled per round after the first, a share of the frames the robots saw.",
)
@click.option(
    "--acquisition",
    type=click.Choice(ACQUISITIONS),
    default=DEFAULTS.acquisition,
    show_default=True,
    help="How the annotator's SelectImages picks them from the uploads.",
)
@click.option("--no-baseline", is_flag=True, help="Leave out the random picks trained beside the loop.")
def demo(
    seed: int,
    backend: str,
    data_dir: Path | None,
    validation: int,
    log_level: str,
    budget: float,
    acquisition: str,
    no_baseline: bool,
    **options: Any,
) -> None:
    """The whole loop on a synthetic field: robots, detector, uploads, selection, annotation, training, swap.

    Starts hub, detector, trainer, converter and annotator in this process (embedded mode). First a
    validation set goes to the hub, annotated, for the trainer to hold out. Round 1: the robots
    upload a few frames, as there is no model yet, and all are annotated; later rounds:
    they stream frames to the detector, its upload filter sends candidates to the hub, and the
    annotator's SelectImages spends the round's label budget on them (--budget, --acquisition).
    The picks are annotated from ground truth (the stand-in for people) in the queue's order, a
    training continues from the deployed model and measures both on the validation set, the
    converter adds its formats, the detector swaps to the new version unless the hub's promotion
    gate held it back as worse, and the held-out frames are scored through the detector. Beside the loop,
    as many random frames are labelled and trained on (the baseline). Camera time is simulated.
    Prints one row per round.
    """
    from visionloop.demo.report import Progress, rounds_table
    from visionloop.demo.rounds import DemoError, run_demo
    from visionloop.runtime.config import ConfigError
    from visionloop.testing.triton import TritonStartError

    config = replace(_config(options, seed), validation=validation, budget=budget, acquisition=acquisition)
    temporary = data_dir is None
    folder = Path(tempfile.mkdtemp(prefix="visionloop-demo-")) if data_dir is None else data_dir
    if not temporary and folder.exists() and any(folder.iterdir()):
        raise click.UsageError(f"--data-dir {folder} is not empty; the demo starts from a fresh project")
    folder.mkdir(parents=True, exist_ok=True)
    _torch_threads()
    started = time.perf_counter()
    with (folder / "demo.log").open("a") as log:
        configure_logging(LogFormat.JSON, log_level, stream=log)
        click.echo(
            f"VisionLoop demo: {config.robots} robots x {config.frames} frames at {config.fps:g} fps, "
            f"{config.rounds} rounds, {config.preset} field {config.size[0]}x{config.size[1]}, "
            f"detector on {backend}; services' log: {folder / 'demo.log'}",
            err=True,
        )
        try:
            result = run_demo(
                config,
                folder,
                backend=backend,
                progress=Progress(enabled=not options["quiet"]),
                baseline=not no_baseline,
            )
        except (DemoError, ConfigError, TritonStartError, OSError) as error:
            click.echo(f"visionloop demo: {error} (state kept in {folder})", err=True)
            sys.exit(1)
    click.echo(rounds_table(result.rows))
    click.echo(f"\n{time.perf_counter() - started:.0f} s in all")
    if options["json_path"]:
        doc = {"config": asdict(config), "backend": backend, "rows": [asdict(r) for r in result.rows]}
        options["json_path"].write_text(json.dumps(doc, indent=2, default=list) + "\n")
    if temporary:
        shutil.rmtree(folder, ignore_errors=True)


@click.command()
@_loop_options(3, EXPERIMENT_HELD_OUT)
@click.option("--seeds", type=click.IntRange(1), default=5, show_default=True, help="Seeds 0..N-1, one field each.")
@click.option(
    "--arm",
    "arms",
    type=click.Choice(EXPERIMENT_ARMS),
    multiple=True,
    default=ARMS,
    show_default=True,
    help="Arms to run (repeat for several); random always runs: the others are compared with it. "
    f"{ORACLE!r}: an upper bound that reads every frame's labels and picks those the model gets most wrong.",
)
@click.option(
    "--budget",
    "budgets",
    type=click.FloatRange(0, 1, min_open=True),
    multiple=True,
    default=BUDGETS,
    show_default=True,
    help="Label budget per round, a share of the frames the robots saw (repeat for several).",
)
@click.option(
    "--random-draws",
    "draws",
    type=click.IntRange(1, 20),
    default=RANDOM_DRAWS,
    show_default=True,
    help="Independent random draws per seed and budget, their scores averaged: one draw's luck moves the "
    "baseline by several points.",
)
def experiment(seeds: int, arms: tuple[str, ...], budgets: tuple[float, ...], draws: int, **options: Any) -> None:
    """Ways of spending one label budget, compared: random, the edge filter, uncertainty, acquisition.

    For every seed and budget, every arm starts from one model trained on the bootstrap frames;
    each later round it labels BUDGET x the frames the robots saw: random picks from all of them,
    the edge filter's first uploads, the most uncertain of the uploads, or the acquisition
    function's picks (rarity-weighted uncertainty and novelty of look, with diversity) from the
    uploads; on demand an oracle that reads every frame's labels and picks those the model gets
    most wrong (an upper bound). Each arm trains on its own picks, continuing from its previous
    model. Prints mAP@0.5 on held-out frames per round (mean and standard deviation over seeds),
    the last round's paired differences from random, AP per category and situation, and what
    choosing cost. Runs in-process (no services); camera time is simulated.
    """
    from visionloop.demo.experiment import RANDOM, run_experiment, trainings
    from visionloop.demo.report import Progress, comparison_table

    config = _config(options, 0)
    if config.rounds < 2:
        raise click.UsageError("--rounds must be at least 2: the bootstrap and one chosen round")
    _torch_threads()
    progress = Progress(enabled=not options["quiet"])
    started = time.perf_counter()
    shares = ", ".join(f"{b * 100:g} %" for b in budgets)
    arms = tuple(a for a in EXPERIMENT_ARMS if a == RANDOM or a in arms)  # in the table's order, random first
    click.echo(
        f"VisionLoop experiment: {', '.join(arms)} at label budgets {shares}, {seeds} seeds, {config.rounds} rounds, "
        f"{config.robots} robots x {config.frames} frames per round, {config.preset} field, random the mean of "
        f"{draws} draw{'s' if draws > 1 else ''}",
        err=True,
    )
    total = trainings(config, seeds, len(arms), len(budgets), draws)
    with progress.bar("trainings", total, unit="training") as bar:

        def step(what: str) -> None:
            bar.update()
            progress.say(what)

        result = run_experiment(config, list(range(seeds)), step, arms=arms, budgets=budgets, draws=draws)
    click.echo(comparison_table(result))
    click.echo(f"\n{time.perf_counter() - started:.0f} s in all")
    if options["json_path"]:
        doc = {"config": asdict(config), "budgets": list(budgets), "seeds": [asdict(s) for s in result.seeds]}
        options["json_path"].write_text(json.dumps(doc, indent=2, default=list) + "\n")
