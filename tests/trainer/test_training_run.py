"""TrainingRun: resumable (also after kill -9), stoppable, continuing from a base model, deterministic;
its batch targets and inputs are the detector's; predict() agrees with the served export."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import cv2
import grpc
import numpy as np
import pytest
import torch

from tests.detector.conftest import start_detector
from visionloop.common.v1 import category_pb2, image_pb2, model_pb2
from visionloop.demo.config import LoopConfig
from visionloop.detector.v1 import detector_service_pb2 as pb
from visionloop.detector.v1 import detector_service_pb2_grpc
from visionloop.lib.centernet import artifacts
from visionloop.lib.centernet import model as reference
from visionloop.lib.preprocess import Frame, prepare
from visionloop.server.detector.config import DetectorSettings
from visionloop.server.trainer.plugin import CategoryInfo, Progress, TrainImage, TrainJob
from visionloop.server.trainer.reference.plugin import ReferenceTrainer, _hyperparameters, _samples
from visionloop.server.trainer.reference.predict import map50_evaluator, predict
from visionloop.server.trainer.reference.train import (
    LAST,
    REPEAT_THRESHOLD,
    EpochReport,
    Hyperparameters,
    TrainingRun,
    _images,
    _prepare_samples,
    encode_batch,
    epoch_order,
    repeat_factors,
    sample_losses,
)
from visionloop.testing.synthetic import world
from visionloop.testing.synthetic.seeding import shapes
from visionloop.testing.synthetic.world import CATEGORIES, generate_samples

REPO = Path(__file__).resolve().parents[2]
# 320x240 frames at a 64x48 input and a tiny model: an epoch takes milliseconds.
TINY = Hyperparameters(resolution=64, epochs=4, batch_size=4, learning_rate=5e-3, width=8, seed=3)
TINY_FRAMES = 12


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """One thread, as in the kill -9 child: the same float results, and a fair share of a shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def samples() -> list[world.Sample]:
    return generate_samples(TINY_FRAMES, seed=5)


def _run(
    samples: list[world.Sample],
    folder: Path,
    hyper: Hyperparameters = TINY,
    should_stop: Callable[[], bool] = lambda: False,
    categories: tuple[str, ...] = CATEGORIES,
    **options: object,
) -> list[EpochReport]:
    reports: list[EpochReport] = []
    TrainingRun(samples, categories, hyper, folder, **options).run(reports.append, should_stop)  # type: ignore[arg-type]
    return reports


def _last_state(folder: Path) -> dict[str, torch.Tensor]:
    return torch.load(folder / LAST, weights_only=True)["model"]


def _assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], atol: float = 1e-6) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key].double(), b[key].double(), atol=atol, rtol=0), key


def _stop_after(reports: list[EpochReport], epoch: int) -> Callable[[], bool]:
    return lambda: bool(reports) and reports[-1].epoch >= epoch


@pytest.mark.parametrize("repeat_threshold", [0.0, 1.0], ids=["every-image-once", "rare-images-repeated"])
def test_resumed_run_ends_as_the_uninterrupted_one(samples, tmp_path: Path, repeat_threshold: float) -> None:
    hyper = replace(TINY, repeat_threshold=repeat_threshold)
    straight = _run(samples, tmp_path / "straight", hyper)
    first: list[EpochReport] = []
    TrainingRun(samples, CATEGORIES, hyper, tmp_path / "resumed").run(first.append, _stop_after(first, 2))
    assert [r.epoch for r in first] == [1, 2]
    assert torch.load(tmp_path / "resumed" / LAST, weights_only=True)["epoch"] == 2
    second = _run(samples, tmp_path / "resumed", hyper)  # a new run object on the same folder

    assert [r.epoch for r in second] == [3, 4]
    assert [r.loss for r in first + second] == pytest.approx([r.loss for r in straight], abs=1e-6)
    _assert_same(_last_state(tmp_path / "straight"), _last_state(tmp_path / "resumed"))
    assert _run(samples, tmp_path / "resumed", hyper) == []  # finished: nothing left to do
    if repeat_threshold:  # the rare images' repeats make the epoch longer than the set
        assert straight[0].images > len(samples)


def _objects(*categories: tuple[int, ...]) -> list[np.ndarray]:
    """Per image, an object array (category, cx, cy, w, h) holding one object of each category given."""
    return [np.array([(c, 10.0, 10.0, 4.0, 4.0) for c in held], np.float64).reshape(-1, 5) for held in categories]


def test_repeat_factors_repeat_images_of_rare_categories() -> None:
    # category 0 in every image, 1 in 2 of 8, 2 in 1 of 8; one image without objects
    objects = _objects((0, 1), (0, 1, 2), (0,), (0,), (0,), (0,), (0,), ())
    factors = repeat_factors(objects, 3, threshold=0.5)
    assert factors[0] == pytest.approx(np.sqrt(0.5 / (2 / 8)))  # its rarest category: 1
    assert factors[1] == pytest.approx(np.sqrt(0.5 / (1 / 8)))  # its rarest category: 2
    assert factors[2:].tolist() == [1.0] * 6  # common categories and empty frames: once
    assert repeat_factors(objects, 3, threshold=0.0).tolist() == [1.0] * 8
    assert repeat_factors(objects, 3, threshold=0.1).tolist() == [1.0] * 8  # nothing that rare


def test_epoch_order_without_repeats_is_a_plain_shuffle() -> None:
    chance = np.array([0.5, 0.5])
    order, flips = epoch_order(np.random.default_rng(4), np.ones(10), 10, chance)
    rng = np.random.default_rng(4)
    expected = rng.permutation(10)  # what training drew before repeats existed: resumed runs agree
    assert order.tolist() == expected.tolist()
    assert flips.tolist() == (rng.random((10, 2)) < chance)[expected].tolist()


def test_epoch_order_shows_each_image_its_factor_times_on_average() -> None:
    factors = np.array([1.0, 1.0, 1.0, 2.5, 1.5])
    rng = np.random.default_rng(0)
    shown = np.zeros(5)
    for _ in range(2000):
        order, flips = epoch_order(rng, factors, 7, np.array([0.5, 0.0]))
        assert len(order) == 7  # a fixed length: the schedule counts its steps in advance
        assert flips.shape == (7, 2)
        assert not flips[:, 1].any()
        shown += np.bincount(order, minlength=5)
    assert shown / 2000 == pytest.approx(factors, abs=0.05)


def _child(folder: str) -> None:
    """The kill -9 test's training process: TINY, slowed down so that it can be killed mid-run."""
    torch.set_num_threads(1)
    hyper = replace(TINY, epochs=6)

    def slow() -> bool:
        time.sleep(0.1)
        return False

    TrainingRun(generate_samples(TINY_FRAMES, seed=5), CATEGORIES, hyper, Path(folder)).run(should_stop=slow)


def test_run_killed_with_sigkill_resumes_to_the_same_model(samples, tmp_path: Path) -> None:
    folder = tmp_path / "killed"
    code = f"from tests.trainer.test_training_run import _child; _child({str(folder)!r})"
    child = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + 60
        while not (folder / LAST).exists():
            assert child.poll() is None, "the child ended before its first checkpoint"
            assert time.monotonic() < deadline, "no checkpoint within 60 s"
            time.sleep(0.02)
        time.sleep(0.15)  # into the next epoch's batches
        child.send_signal(signal.SIGKILL)
        assert child.wait(30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    killed_at = torch.load(folder / LAST, weights_only=True)["epoch"]
    assert 1 <= killed_at < 6

    hyper = replace(TINY, epochs=6)
    resumed = _run(samples, folder, hyper)
    straight = _run(samples, tmp_path / "straight", hyper)
    assert [r.epoch for r in resumed] == list(range(killed_at + 1, 7))
    _assert_same(_last_state(folder), _last_state(tmp_path / "straight"))
    losses = torch.load(folder / LAST, weights_only=True)["losses"]
    assert losses == pytest.approx([r.loss for r in straight], abs=1e-6)


def test_stop_returns_at_once_and_keeps_the_best_model(samples, tmp_path: Path) -> None:
    calls = 0
    stop_at = 5  # the second batch of epoch 2 (3 batches per epoch)

    def should_stop() -> bool:
        nonlocal calls
        calls += 1
        return calls >= stop_at

    reports = _run(samples, tmp_path, should_stop=should_stop)
    assert calls == stop_at  # no batch ran after the stop
    assert [r.epoch for r in reports] == [1]
    assert torch.load(tmp_path / LAST, weights_only=True)["epoch"] == 1  # the partial epoch left nothing
    best = TrainingRun(samples, CATEGORIES, TINY, tmp_path).best_model()
    assert best is not None
    _assert_same(best.state_dict(), _last_state(tmp_path), atol=0)


def test_best_checkpoint_follows_the_score(samples, tmp_path: Path) -> None:
    """Scores at epochs 2, 4, 6 (every 2, and the last): the best is epoch 4's model, whatever comes after."""
    scores = {2: 0.5, 4: 0.9, 6: 0.7}
    seen: dict[int, dict[str, torch.Tensor]] = {}

    def evaluate(model: reference.CenterNet) -> float:
        assert not model.training
        epoch = len(seen) * 2 + 2
        seen[epoch] = {k: v.clone() for k, v in model.state_dict().items()}
        return scores[epoch]

    hyper = replace(TINY, epochs=6)
    reports = _run(samples, tmp_path, hyper, evaluate=evaluate, evaluate_every=2)
    assert [r.score for r in reports] == [None, 0.5, None, 0.9, None, 0.7]
    assert [r.best_epoch for r in reports] == [1, 2, 2, 4, 4, 4]  # the latest until the first score
    best = TrainingRun(samples, CATEGORIES, hyper, tmp_path).best_model()
    assert best is not None
    _assert_same(best.state_dict(), seen[4], atol=0)


def test_base_state_gives_a_head_start(samples, tmp_path: Path) -> None:
    base_hyper = replace(TINY, epochs=8, seed=11)
    _run(samples, tmp_path / "base", base_hyper)
    base = _last_state(tmp_path / "base")
    one_epoch = replace(TINY, epochs=1)
    scratch = _run(samples, tmp_path / "scratch", one_epoch)
    continued = _run(samples, tmp_path / "continued", one_epoch, base_state=base)
    assert continued[0].loss < scratch[0].loss

    # Another class count: the heatmap head starts afresh, everything else continues.
    weeds = (world.WEED,)
    alone = _run(samples, tmp_path / "weeds-scratch", one_epoch, categories=weeds)
    continued = _run(samples, tmp_path / "weeds", one_epoch, categories=weeds, base_state=base)
    assert continued[0].loss < alone[0].loss
    fresh_head = torch.load(tmp_path / "weeds" / LAST, weights_only=True)["model"]["heatmap.weight"]
    assert fresh_head.shape[0] == 1

    with pytest.raises(ValueError, match="shares no parameter"):
        _run(samples, tmp_path / "nothing", one_epoch, base_state={"other": torch.zeros(1)})


def test_runs_are_deterministic_per_seed(samples, tmp_path: Path) -> None:
    a, b = _run(samples, tmp_path / "a"), _run(samples, tmp_path / "b")
    assert [r.loss for r in a] == [r.loss for r in b]
    _assert_same(_last_state(tmp_path / "a"), _last_state(tmp_path / "b"), atol=0)
    other = _run(samples, tmp_path / "c", replace(TINY, seed=4))
    assert [r.loss for r in other] != [r.loss for r in a]


def test_folder_of_another_run_is_refused(samples, tmp_path: Path) -> None:
    _run(samples, tmp_path, replace(TINY, epochs=1))
    with pytest.raises(ValueError, match="another run"):
        _run(samples, tmp_path)


def test_a_checkpoint_of_another_run_can_be_discarded_to_start_over(samples, tmp_path: Path) -> None:
    # as after an upgrade that added a hyperparameter: the same training, other hyperparameters
    _run(samples, tmp_path / "upgraded", replace(TINY, epochs=2, repeat_threshold=0.0))
    stopped = _run(samples, tmp_path / "upgraded", should_stop=lambda: True, restart_foreign=True)
    assert stopped == []
    assert not (tmp_path / "upgraded" / LAST).exists()  # the other run's checkpoints went before any epoch
    assert TrainingRun(samples, CATEGORIES, TINY, tmp_path / "upgraded").best_model() is None

    _run(samples, tmp_path / "other", replace(TINY, epochs=2, repeat_threshold=0.0))
    reports = _run(samples, tmp_path / "other", restart_foreign=True)
    assert [r.epoch for r in reports] == list(range(1, TINY.epochs + 1))
    _run(samples, tmp_path / "fresh")
    _assert_same(_last_state(tmp_path / "other"), _last_state(tmp_path / "fresh"))  # as if the folder were empty


def _train_job(samples: list[world.Sample], folder: Path, hyperparameters: dict[str, object]) -> TrainJob:
    """A reference-trainer job on ``samples`` as the trainer service hands it over (files and hub shapes)."""
    folder.mkdir(parents=True, exist_ok=True)
    kinds = dict(world.categories())
    hub = {name: category_pb2.Category(id=f"c{i}", name=name) for i, name in enumerate(CATEGORIES)}
    categories = tuple(CategoryInfo(c.id, c.name, kinds[c.name]) for c in hub.values())
    images = []
    for index, sample in enumerate(samples):
        path = folder / f"{index}.png"
        cv2.imwrite(str(path), sample.image)
        height, width = sample.image.shape[:2]
        annotations = tuple(shapes(sample.annotations, hub, width, height))
        images.append(TrainImage(f"{index:064x}", path, width, height, annotations))
    return TrainJob("t1", artifacts.VARIANT, hyperparameters, categories, folder / "job", tuple(images))


def test_the_reference_trainer_starts_over_from_a_checkpoint_it_cannot_resume(samples, tmp_path: Path) -> None:
    """A training checkpointed by an older trainer (a hyperparameter it did not have) resumes after the
    upgrade by starting over, instead of failing every retry on "belongs to another run"."""
    trainer = ReferenceTrainer()
    old = {"resolution": 64, "epochs": 2, "batch_size": 4, "learning_rate": 5e-3, "width": 8, "seed": 3}
    job = _train_job(samples, tmp_path, dict(trainer.verify(artifacts.VARIANT, old).corrected))
    before = dict(job.hyperparameters, repeat_threshold=0.0)  # what the older trainer ran
    _run(_samples(job.train_images, job.categories), job.folder / "run", _hyperparameters(before))
    reports: list[Progress] = []
    trainer.train(job, reports.append, lambda: False)
    assert [r.epoch for r in reports] == [1, 2]  # from the start, with this trainer's hyperparameters
    assert trainer.has_model(job)


def test_batch_targets_are_the_per_image_encoding(samples) -> None:
    """encode_batch is model.encode of the (flipped) objects, bit for bit; the cached inputs are exactly prepare()'s."""
    width, height = 160, 128
    images, objects = _prepare_samples(samples, list(CATEGORIES), width, height)
    flips = np.random.default_rng(0).random((len(samples), 2)) < 0.5
    heat, size, offset, mask = encode_batch(objects, flips, len(CATEGORIES), width, height)
    batch = _images(images, np.arange(len(samples)), flips)
    spec = model_pb2.ModelInput(width=width, height=height, color_order=model_pb2.COLOR_ORDER_RGB)
    for i, sample in enumerate(samples):
        rl, ud = flips[i]
        targets = [
            reference.Target(int(k), width - cx if rl else cx, height - cy if ud else cy, w, h)
            for k, cx, cy, w, h in objects[i].tolist()  # Python floats: numpy scalars would make encode use float64
        ]
        assert targets
        want = reference.encode(targets, len(CATEGORIES), width, height)
        for got, expected in zip((heat[i], size[i], offset[i], mask[i]), vars(want).values(), strict=True):
            assert np.array_equal(got, expected)
        tensor, _ = prepare(Frame(sample.image, "bgr"), spec, model_pb2.RESCALE_TYPE_PAD)
        dims = [d for d, on in ((2, rl), (1, ud)) if on]
        assert torch.equal(batch[i], torch.from_numpy(tensor).flip(dims))


@pytest.fixture(scope="module")
def smoke_model(tmp_path_factory: pytest.TempPathFactory) -> reference.CenterNet:
    """Briefly trained at 128x96, so that it finds things to compare."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    hyper = Hyperparameters(resolution=128, epochs=20, batch_size=8, learning_rate=2e-2, width=12, seed=0)
    try:
        run = TrainingRun(generate_samples(32, seed=9), CATEGORIES, hyper, tmp_path_factory.mktemp("smoke"))
        run.run()
        model = run.best_model()
    finally:
        torch.set_num_threads(threads)
    assert model is not None
    return model


async def test_predict_agrees_with_the_served_export(smoke_model, tmp_path: Path) -> None:
    """predict() in PyTorch gives what a real detector serving the exported zip answers, on a frame
    of another size than the training frames (so the mapping back is exercised)."""
    sample = world.generate(9, 40)  # held out
    pixels = cv2.resize(sample.image, (480, 360), interpolation=cv2.INTER_LINEAR)
    size = (128, 96)
    zip_path = reference.model_zip(smoke_model, tmp_path / "m.zip", world.categories(), *size)
    settings = DetectorSettings(port=0, data_dir=tmp_path / "detector", model_paths=f"m={zip_path}")
    server, port = await start_detector(settings)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = detector_service_pb2_grpc.DetectorServiceStub(channel)
            image = image_pb2.Image(encoded=cv2.imencode(".png", pixels)[1].tobytes())
            response = await stub.Detect(pb.DetectRequest(image=image, options=pb.DetectOptions(score_threshold=0.2)))
    finally:
        await server.stop(0)
    (predictions,) = predict(smoke_model, [pixels], world.categories(), size, score_threshold=0.2)

    served = [
        (d.category_name, d.confidence, d.box.x, d.box.y, d.box.width, d.box.height) for d in response.detections.boxes
    ]
    served += [(d.category_name, d.confidence, d.point.x, d.point.y, 0.0, 0.0) for d in response.detections.points]
    ours = [(p.category, p.score, *(p.box if p.box else (*p.point, 0.0, 0.0))) for p in predictions]  # type: ignore[misc]
    assert served
    assert len(ours) == len(served)
    for want, got in zip(sorted(served, key=lambda d: -d[1]), ours, strict=True):
        assert got[0] == want[0]
        assert got[1:] == pytest.approx(want[1:], abs=1e-3)
    assert any(p.point is not None for p in predictions) == bool(response.detections.points)


def test_map50_evaluator_scores_a_trained_model_above_an_untrained_one(smoke_model) -> None:
    held_out = generate_samples(16, seed=9, start=32)
    score = map50_evaluator(held_out, world.categories(), (128, 96))
    untrained = reference.CenterNet(len(CATEGORIES), 12)
    trained = score(smoke_model)
    assert 0.0 <= score(untrained) < trained <= 1.0


def test_sample_losses_say_how_wrong_the_model_is_on_each_frame(smoke_model) -> None:
    held_out = generate_samples(16, seed=9, start=32)
    size = (128, 96)
    true = sample_losses(smoke_model, held_out, CATEGORIES, size)
    # each frame labelled with the next one's objects: labels that disagree with what it shows
    wrong = [replace(s, annotations=held_out[(i + 1) % len(held_out)].annotations) for i, s in enumerate(held_out)]
    mislabelled = sample_losses(smoke_model, wrong, CATEGORIES, size)
    untrained = sample_losses(reference.CenterNet(len(CATEGORIES), 12), held_out, CATEGORIES, size)
    assert true.shape == (len(held_out),)
    assert np.isfinite(true).all()
    assert (true < mislabelled).all()  # frame by frame, not only on average
    assert (true < untrained).all()
    smoke_model.train()
    sample_losses(smoke_model, held_out[:1], CATEGORIES, size)
    assert smoke_model.training  # its mode as it was
    smoke_model.eval()


def test_the_reference_trainer_and_the_demo_oversample_rare_categories_by_default() -> None:
    trainer = ReferenceTrainer()
    assert trainer.verify(artifacts.VARIANT, {}).corrected["repeat_threshold"] == REPEAT_THRESHOLD > 0
    assert trainer.verify(artifacts.VARIANT, {"repeat_threshold": 0.0}).corrected["repeat_threshold"] == 0.0
    refused = trainer.verify(artifacts.VARIANT, {"repeat_threshold": 1.5})
    assert any("repeat_threshold" in error for error in refused.errors)
    # the demo's hub trainings and the experiment's in-process ones train alike
    config = LoopConfig()
    assert config.training_spec(100, continued=True)["repeat_threshold"] == REPEAT_THRESHOLD
    assert config.hyperparameters(100, continued=True).repeat_threshold == REPEAT_THRESHOLD
