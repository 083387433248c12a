"""The reference CenterNet: targets the detector decodes back, a training smoke test, and its ONNX
export served by a real in-process detector over gRPC."""

from __future__ import annotations

from pathlib import Path

import cv2
import grpc
import numpy as np
import pytest
import torch

from tests.detector.conftest import start_detector
from visionloop.common.v1 import image_pb2
from visionloop.detector.v1 import detector_service_pb2 as pb
from visionloop.detector.v1 import detector_service_pb2_grpc
from visionloop.lib import decoders
from visionloop.lib.centernet import model as reference
from visionloop.server.detector.config import DetectorSettings
from visionloop.server.trainer.reference.train import input_size, train
from visionloop.testing.synthetic import world
from visionloop.testing.synthetic.world import CATEGORIES, WEED, generate, generate_samples

FAST_FRAMES, FAST_EPOCHS, FAST_RESOLUTION = 64, 15, 160  # about 10 s on 2 cores


def test_world_is_deterministic_and_labelled() -> None:
    a, b, c = generate(7, 3), generate(7, 3), generate(7, 4)
    assert a.image.shape == (240, 320, 3)
    assert a.image.dtype == np.uint8
    assert np.array_equal(a.image, b.image)
    assert a.annotations == b.annotations
    assert not np.array_equal(a.image, c.image)
    samples = generate_samples(40, seed=7)
    kinds = {x.category for s in samples for x in s.annotations}
    assert kinds == set(CATEGORIES)
    for sample in samples:
        for annotation in sample.annotations:
            if annotation.category == WEED:
                x, y, w, h = annotation.box
                assert x >= 0
                assert y >= 0
                assert x + w <= 320
                assert y + h <= 240
                assert w > 0
                assert h > 0
            else:
                assert annotation.box is None
                assert annotation.point is not None


def _as_targets(sample: world.Sample) -> list[reference.Target]:
    targets = []
    for a in sample.annotations:
        cx, cy = a.centre
        w, h = (a.box[2], a.box[3]) if a.box else (reference.POINT_SIZE, reference.POINT_SIZE)
        targets.append(reference.Target(CATEGORIES.index(a.category), cx, cy, w, h))
    return targets


def test_targets_decode_back_to_the_ground_truth() -> None:
    """Encoded targets, read as if they were model outputs, give every ground-truth box back."""
    for sample in generate_samples(20, seed=3):
        targets = _as_targets(sample)
        encoded = reference.encode(targets, len(CATEGORIES), 320, 240)
        found = decoders.centernet([encoded.heatmap, encoded.size, encoded.offset], 0.99, reference.STRIDE)
        assert len(found.scores) == len(targets)
        expected = sorted(
            (t.category, t.cx - t.width / 2, t.cy - t.height / 2, t.cx + t.width / 2, t.cy + t.height / 2)
            for t in targets
        )
        decoded = sorted((int(k), *map(float, box)) for k, box in zip(found.classes, found.boxes, strict=True))
        for want, got in zip(expected, decoded, strict=True):
            assert want[0] == got[0]
            assert np.allclose(want[1:], got[1:], atol=1.0), (want, got)


def test_targets_skip_centres_outside_the_input() -> None:
    encoded = reference.encode([reference.Target(0, -3.0, 10.0, 8.0, 8.0)], 1, 64, 64)
    assert encoded.mask.sum() == 0
    assert encoded.heatmap.max() < 1.0


@pytest.fixture(scope="module")
def trained() -> tuple[reference.CenterNet, list[float]]:
    """A briefly trained model (shared: training is the slow part) and its per-epoch losses."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # CI's budget; also keeps results comparable between machines
    losses: list[float] = []
    try:
        model = train(
            generate_samples(FAST_FRAMES, seed=0),
            CATEGORIES,
            epochs=FAST_EPOCHS,
            batch_size=8,
            resolution=FAST_RESOLUTION,
            seed=0,
            progress=lambda _, value: losses.append(value),
        )
    finally:
        torch.set_num_threads(threads)
    return model, losses


def test_training_reduces_the_loss(trained: tuple[reference.CenterNet, list[float]]) -> None:
    _, losses = trained
    assert len(losses) == FAST_EPOCHS
    assert losses[-1] < 0.4 * losses[0], losses


def test_training_is_deterministic() -> None:
    samples = generate_samples(8, seed=1)
    first, second = (train(samples, CATEGORIES, epochs=1, batch_size=4, resolution=160, seed=5) for _ in range(2))
    for a, b in zip(first.state_dict().values(), second.state_dict().values(), strict=True):
        assert torch.equal(a, b)


async def _detect(zip_path: Path, folder: Path, pixels: np.ndarray) -> pb.DetectResponse:
    settings = DetectorSettings(port=0, data_dir=folder, model_paths=f"reference={zip_path}")
    server, port = await start_detector(settings)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = detector_service_pb2_grpc.DetectorServiceStub(channel)
            encoded = cv2.imencode(".png", pixels)[1].tobytes()
            return await stub.Detect(pb.DetectRequest(image=image_pb2.Image(encoded=encoded)))
    finally:
        await server.stop(0)


async def test_export_is_served_by_the_detector(
    trained: tuple[reference.CenterNet, list[float]], tmp_path: Path
) -> None:
    """The exported zip loads in a real detector; on a larger frame (so coordinates must be mapped
    back from the model's input) it finds a weed near where the world put one."""
    model, _ = trained
    width, height = input_size(FAST_RESOLUTION, 320, 240)
    categories = world.categories()
    zip_path = reference.model_zip(model, tmp_path / "reference.zip", categories, width, height)
    sample = generate(0, 2)  # a training frame: the smoke-trained model is only asked to find what it saw
    pixels = cv2.resize(sample.image, (640, 480), interpolation=cv2.INTER_LINEAR)
    response = await _detect(zip_path, tmp_path / "detector", pixels)

    assert (response.image_width, response.image_height) == (640, 480)
    truth = [(a.centre[0] * 2, a.centre[1] * 2) for a in sample.annotations if a.category == WEED]
    assert truth
    found = [(d.box.x + d.box.width / 2, d.box.y + d.box.height / 2) for d in response.detections.boxes]
    assert found, response
    assert all(d.category_name == WEED for d in response.detections.boxes)
    assert all(p.category_name == world.STEM for p in response.detections.points)
    nearest = min(np.hypot(fx - tx, fy - ty) for fx, fy in found for tx, ty in truth)
    assert nearest < 16, (found, truth)


def test_onnx_matches_pytorch(trained: tuple[reference.CenterNet, list[float]], tmp_path: Path) -> None:
    """Dynamic batch and the decoder layout survive the export."""
    import onnxruntime

    model, _ = trained
    path = reference.export_onnx(model, tmp_path / "m.onnx", 160, 128)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    images = torch.rand(3, 3, 128, 160)
    heatmap, size, offset = session.run(["heatmap", "size", "offset"], {"images": images.numpy()})
    assert heatmap.shape == (3, len(CATEGORIES), 32, 40)
    assert size.shape == offset.shape == (3, 2, 32, 40)
    with torch.no_grad():
        expected = reference.Exported(model)(images)
    for got, want in zip((heatmap, size, offset), expected, strict=True):
        assert np.allclose(got, want.numpy(), atol=1e-4)
    assert heatmap.min() >= 0
    assert heatmap.max() <= 1
