"""``visionloop demo``, short: every stage of the loop runs against the real services, and it learns.

The services run in-process on free ports with real gRPC over loopback (the demo's ``Stack``);
after the rounds the test checks, through the hub's and the detector's own APIs, that each stage
left its mark: robot uploads, annotations, a succeeded training per round, the converter's
format, and the detector serving the last version.
"""

from __future__ import annotations

import dataclasses
import json
import re
import statistics
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from visionloop.cli.main import cli
from visionloop.client.detector import DetectorClient
from visionloop.client.loop import LoopClient
from visionloop.common.v1 import image_pb2, training_pb2
from visionloop.demo.config import ORACLE, LoopConfig
from visionloop.demo.experiment import (
    ACQUISITION,
    ARMS,
    FILTER,
    RANDOM,
    UNCERTAINTY,
    ArmRound,
    Comparison,
    Scores,
    SeedResult,
    run_experiment,
    spaced,
)
from visionloop.demo.report import comparison_table, rounds_table
from visionloop.demo.rounds import DemoResult, run_rounds, stack_config
from visionloop.demo.stack import Stack
from visionloop.loop.v1 import annotation_service_pb2
from visionloop.server.annotator.selection import SELECTED_TAG

pytestmark = pytest.mark.slow

TOLERANT = {"promotion_tolerance": 1.0}  # every version passes the promotion gate
# Small, but big enough that the second model is clearly better than the first: the rows field, a
# fifth of the robots' frames labelled in round 2.
SHORT = LoopConfig(rounds=2, robots=2, frames=30, fps=15.0, bootstrap=24, held_out=40, epochs=12, budget=0.2)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    with Stack(stack_config(SHORT, tmp_path / "demo")) as running:
        yield running


def test_a_short_demo_runs_every_stage_and_the_second_model_is_better(stack: Stack) -> None:
    result: DemoResult = run_rounds(SHORT, stack)

    first, second = result.rows
    assert second.map50 > first.map50, rounds_table(result.rows)

    # Uploads: round 1 through Upload (no model yet), round 2 through the detector's upload filter.
    assert first.uploads == first.annotated == SHORT.bootstrap
    assert second.uploads > 0
    assert result.served_versions[1] == {first.version}  # the robots were answered by round 1's model
    # Round 2's label budget, spent on the uploads by SelectImages: no more than the budget.
    assert second.candidates == second.uploads
    assert 0 < second.annotated == min(SHORT.labels(), second.uploads)
    assert second.random_map50 is not None  # the random baseline at the same budget, beside the loop

    ref = stack.config
    with LoopClient(stack.hub, ref.organization, ref.project) as hub:
        complete = list(hub.list_images(states=[image_pb2.IMAGE_STATE_COMPLETE]))
        trained = [image for image in complete if "test" not in image.tags]
        assert len(trained) == first.annotated + second.annotated  # the picks, annotated
        assert len(complete) - len(trained) == SHORT.validation  # and the validation set the trainer holds out
        assert sum(SELECTED_TAG in image.tags for image in trained) == second.annotated
        left = list(hub.list_images(states=[image_pb2.IMAGE_STATE_INBOX]))
        assert len(left) == second.uploads - second.annotated  # the others wait, not lost
        assert first.annotations > 0
        assert second.annotations > 0
        assert sum(annotation_count(hub, image.id) for image in trained) == first.annotations + second.annotations

        # A succeeded training per round, the second continuing from the first's model.
        trainings = sorted(hub.list_trainings(), key=lambda t: t.number)
        assert [t.phase for t in trainings] == [training_pb2.TRAINING_PHASE_SUCCEEDED] * 2
        assert [t.result_model_version for t in trainings] == [first.version, second.version]
        assert trainings[1].spec.base_model_version == first.version
        # The second measured the first on the validation set too, and the promotion gate let it through.
        measured = trainings[1].status.confusion_matrix.metrics
        assert measured.image_count == SHORT.validation
        assert [b.version for b in measured.baselines] == [first.version]
        assert not second.held, second.gate

        # The trainer's formats plus the converter's.
        for model in hub.list_models():
            assert {"pytorch", "onnx", "triton_python"} <= set(model.formats), model

    # The detector swapped: it serves the second version now.
    with DetectorClient(stack.detector) as detector:
        loaded = {m.name: m.info.version for m in detector.about().models}
    assert loaded[ref.project] == second.version != first.version


def annotation_count(hub: LoopClient, image_id: str) -> int:
    request = annotation_service_pb2.ListAnnotationsRequest(ref=hub.ref, image_id=image_id)
    return len(hub.annotations.ListAnnotations(request).annotations)


@pytest.mark.timeout(900)  # about 30 s alone; PyTorch training on cores other jobs hold can take ten times that
def test_the_experiment_spends_equal_budgets_on_the_same_frames() -> None:
    # One seed (trainings are what costs); the first model must find something for the filter.
    config = LoopConfig(rounds=2, robots=2, frames=10, bootstrap=24, held_out=8, epochs=12)
    result = run_experiment(config, [3], arms=(*ARMS, ORACLE), budgets=(0.2,))

    (seed,) = result.seeds
    arms = seed.runs["20%"]
    assert set(arms) == {*ARMS, ORACLE}
    assert all(arms[arm][0] == arms[RANDOM][0] for arm in arms)  # one bootstrap model for every arm
    budget = round(0.2 * config.robots * config.frames)
    assert arms[RANDOM][1].picked == budget
    assert arms[RANDOM][1].candidates == config.robots * config.frames
    uploads = arms[FILTER][1].candidates
    assert 0 < uploads <= config.robots * config.frames
    for arm in (FILTER, UNCERTAINTY, ACQUISITION):
        assert arms[arm][1].candidates == uploads  # every chooser sees the same uploads
        assert arms[arm][1].picked == min(budget, uploads)  # the budget, never more
        assert arms[arm][1].images == config.bootstrap + arms[arm][1].picked
    assert arms[ACQUISITION][1].selection_seconds > 0
    # the oracle reads every frame the robots saw and spends the whole budget
    assert arms[ORACLE][1].candidates == config.robots * config.frames
    assert arms[ORACLE][1].picked == budget
    scores = arms[ACQUISITION][1].scores
    assert set(scores.categories) == {"weed", "stem", "crop", "thistle"}
    assert set(scores.situations) == {"routine", "shifted"}  # 2 rounds: the light changes in round 2


@pytest.mark.timeout(900)
def test_random_is_the_mean_of_its_draws_and_the_same_whichever_budgets_run() -> None:
    config = LoopConfig(rounds=2, robots=1, frames=10, bootstrap=8, held_out=4, epochs=2)
    said: list[str] = []
    both = run_experiment(config, [1], said.append, arms=(RANDOM,), budgets=(0.2, 0.5), draws=2)
    alone = run_experiment(config, [1], arms=(RANDOM,), budgets=(0.5,), draws=2)
    draws = [float(m.group(1)) for line in said if "50% random draw" in line if (m := re.search(r"([0-9.]+)$", line))]
    assert len(draws) == 2
    assert both.maps(0.5, RANDOM, 2)[0] == pytest.approx(statistics.fmean(draws), abs=1e-3)
    assert alone.maps(0.5, RANDOM, 2) == both.maps(0.5, RANDOM, 2)  # its draws do not depend on the 20 % ones
    assert both.draws == 2
    assert "(random: the mean of 2 draws)" in comparison_table(both)
    with pytest.raises(ValueError, match="draw"):
        run_experiment(config, [1], budgets=(0.5,), draws=0)


def test_spaced_picks_the_highest_scores_apart_along_each_drive() -> None:
    offers = [(index / 10.0, camera, None) for index in range(30) for camera in ("robot-0", "robot-1")]
    scores = [0.0] * len(offers)
    for index, score in ((0, 0.9), (2, 0.8), (12, 0.7), (40, 0.6), (41, 0.5), (50, 0.4)):
        scores[index] = score  # even indices robot-0 (frames 0, 1, 6, 20, 25), odd robot-1 (frame 20)
    picks = spaced(scores, offers, 4, gap=5, fps=10.0)  # type: ignore[arg-type]
    # 0.9 (robot-0 frame 0); 0.8 is frame 1 of the same drive: skipped; 0.7 (frame 6), 0.6 (frame 20);
    # 0.5 is frame 20 of the other drive: taken
    assert picks == [0, 12, 40, 41]
    assert spaced(scores, offers, 2, gap=5, fps=10.0) == [0, 12]  # type: ignore[arg-type]
    assert spaced(scores, offers, 100, gap=1, fps=10.0) == list(range(len(offers)))  # type: ignore[arg-type]
    # Six drives' worth of spacing on one camera's 30 frames at most: the rest of the budget goes to the
    # highest of those skipped (0.8 first, then frames in order of score, ties by index).
    one = [offer for offer in offers if offer[1] == "robot-0"]
    ranked = [scores[2 * index] for index in range(30)]  # robot-0's scores: 0.9, 0.8, 0.7, 0.6, 0.4 at 0, 1, 6, 20, 25
    picks = spaced(ranked, one, 8, gap=5, fps=10.0)  # type: ignore[arg-type]
    assert len(picks) == 8
    assert {0, 1, 6, 20, 25} <= set(picks)


def _round(map50: float, weed: float, seconds: float = 0.0) -> ArmRound:
    return ArmRound(10, 40, 20, 42, Scores(map50, {"weed": weed}, {"routine": map50}), {"routine": 10.0}, seconds)


def test_the_comparison_reports_paired_differences_and_spread_over_seeds() -> None:
    config = LoopConfig(rounds=2)

    def seed(number: int, acquisition: float, random_: float) -> SeedResult:
        start = _round(0.5, 0.4)
        runs = {RANDOM: (start, _round(random_, 0.5)), ACQUISITION: (start, _round(acquisition, 0.7, 0.002))}
        return SeedResult(number, {"10%": runs})

    result = Comparison(config, (seed(0, 0.8, 0.7), seed(1, 0.6, 0.7)), (RANDOM, ACQUISITION), (0.1,))
    assert result.gains(0.1, ACQUISITION) == pytest.approx([0.1, -0.1])
    table = comparison_table(result)
    assert "Budget 10%: 48 labels a round of the 480 frames the robots saw" in table
    assert "0.700 ± 0.141" in table  # the acquisition, round 2: mean and sample standard deviation
    assert "0.700 ± 0.000" in table  # random
    assert "+0.000 ± 0.141  1 of 2  (+0.100, -0.100)" in table  # paired by seed
    assert "AP@0.5 weed   0.500        0.700" in table
    assert "choosing, ms a round       0            2" in table


def test_the_experiment_command_runs_random_and_the_arms_named(tmp_path: Path) -> None:
    small = ["--seeds", "1", "--rounds", "2", "--robots", "1", "--frames", "10", "--bootstrap", "8", "--epochs", "2"]
    options = [*small, "--held-out", "4", "--budget", "0.2", "--quiet", "--json", str(tmp_path / "result.json")]
    named = ["--arm", "uncertainty", "--arm", "oracle", "--repeat-threshold", "0"]
    outcome = CliRunner().invoke(cli, ["experiment", *options, *named])
    assert outcome.exit_code == 0, outcome.output
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["config"]["repeat_threshold"] == 0.0  # the trainer without rare-category oversampling
    (seed,) = result["seeds"]
    assert list(seed["runs"]["20%"]) == [RANDOM, UNCERTAINTY, ORACLE]  # random always runs, the others compared
    assert "uncertainty" in outcome.output
    assert "oracle" in outcome.output
    assert "edge filter" not in outcome.output

    unknown = CliRunner().invoke(cli, ["experiment", *options, "--arm", "psychic"])
    assert unknown.exit_code == 2
    assert "psychic" in unknown.output


def test_the_demo_command_refuses_a_data_folder_in_use(tmp_path: Path) -> None:
    (tmp_path / "something").write_text("x")
    outcome = CliRunner().invoke(cli, ["demo", "--data-dir", str(tmp_path)])
    assert outcome.exit_code == 2
    assert "is not empty" in outcome.output


def test_the_demo_detects_through_a_real_triton_server(tmp_path: Path) -> None:
    # The first model must find something for the filter to upload (independent frames of the standard
    # field, as on the rows field a few frames a robot overlap): trained as SHORT's, scored on less.
    tiny = LoopConfig(
        preset="standard", rounds=2, robots=2, frames=10, bootstrap=24, held_out=12, validation=12, epochs=12
    )
    # About serving through Triton: the gate lets the second model through, whatever its figures.
    config = dataclasses.replace(stack_config(tiny, tmp_path / "demo", backend="triton"), loop=TOLERANT)
    with Stack(config) as stack:
        result = run_rounds(tiny, stack)
        model = stack.context("detector").models.get()
        # The last version, on Triton: from the converter's entry, or from the detector's own when it
        # loaded the version before the converter had published one (both run on the tritonserver).
        last = result.rows[-1].version
        ref = stack.config
        assert model.backend.kind == "triton"
        assert model.info.version == last
        published = f"{ref.organization}.{ref.project}.{last}.triton_python"
        assert model.backend.model_name == published or model.backend.model_name.startswith(f"{ref.project}.")
        assert "triton_python" in result.rows[-1].formats
    assert result.served_versions[1] == {result.rows[0].version} != {last}
