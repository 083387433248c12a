"""The classical backend on generated objects: clicks to IoU 0.85, and the mask wire format."""

from __future__ import annotations

import numpy as np
import pytest

from tests.annotator import shapes
from visionloop.runtime.errors import InvalidArgument
from visionloop.server.annotator import masks
from visionloop.server.annotator.classical import ClassicalImage
from visionloop.server.annotator.prompts import Click, Prompts

OBJECTS = 12


def clicks_figure(contrast: float) -> list[int]:
    """NoC@85: clicks the simulated annotator needs per object (21 = never within 20)."""
    counts = []
    for seed in range(OBJECTS):
        scene = shapes.scene(seed, contrast=contrast)
        image = ClassicalImage(scene.image)
        history: list[Click] = []

        def click(x: float, y: float, positive: bool, image: ClassicalImage = image, history: list[Click] = history):
            history.append(Click(x, y, positive))
            return image.segment(Prompts(tuple(history), None)).mask

        counts.append(shapes.clicks_to_reach(scene.mask, click))
    return counts


def test_clicks_to_reach_iou_085_on_generated_objects() -> None:
    high = clicks_figure(contrast=1.0)
    low = clicks_figure(contrast=0.3)
    print(f"\nclicks to IoU 0.85, classical backend, {OBJECTS} objects: high contrast mean {np.mean(high):.2f} {high}")
    print(f"low contrast (0.3) mean {np.mean(low):.2f} {low}")
    assert np.mean(high) <= 1.5
    assert np.mean(low) <= 8
    assert np.mean(low) >= np.mean(high)


def test_rle_round_trips_and_starts_with_background() -> None:
    mask = np.zeros((4, 5), bool)
    mask[0, 0] = True
    mask[1, 1:4] = True
    mask[3, 4] = True
    rle = masks.encode_rle(mask)
    # row-major: fg at 0; bg 1..5 (5); fg 6,7,8 (3); bg 9..18 (10); fg 19 (1)
    assert list(rle.counts) == [0, 1, 5, 3, 10, 1]
    assert (rle.width, rle.height) == (5, 4)
    assert np.array_equal(masks.decode_rle(rle), mask)
    assert list(masks.encode_rle(np.zeros((2, 2), bool)).counts) == [4]
    assert masks.box(mask) == masks.box(masks.decode_rle(rle))
    assert (masks.box(mask).width, masks.box(mask).height) == (5, 4)


def test_a_flat_image_gives_the_prompt_back_instead_of_crashing() -> None:
    image = ClassicalImage(np.full((60, 80, 3), 128, np.uint8))
    result = image.segment(Prompts((Click(40, 30, True),), None))
    assert result.mask[30, 40]
    with pytest.raises(InvalidArgument):
        image.segment(Prompts((Click(40, 30, False),), None))
