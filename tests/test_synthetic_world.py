"""The synthetic field: unchanged default frames, presets that label what they draw, and a
difficulty setting that really makes frames harder."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import cv2
import numpy as np
import pytest

from visionloop.testing.synthetic.world import (
    ALL_CATEGORIES,
    CATEGORIES,
    CATEGORY_TYPES,
    PRESETS,
    Sample,
    WorldConfig,
    at_difficulty,
    categories,
    generate,
    generate_samples,
    preset,
)

# sha256 over the pixels and annotation reprs below, taken before presets existed: detector and
# trainer tests (and saved data sets) rely on these exact frames. Pinned numpy and OpenCV.
DEFAULT_FRAMES = "c4c1687d2d70288e0922c4e501c8dcebc9ea542ea8fc52fb780cd095abee1d8c"


def _digest(samples: list[Sample]) -> str:
    digest = hashlib.sha256()
    for sample in samples:
        digest.update(sample.image.tobytes())
        digest.update(repr(sample.annotations).encode())
    return digest.hexdigest()


def test_default_frames_are_unchanged() -> None:
    samples = [generate(0, i) for i in range(20)] + [generate(0, i, WorldConfig()) for i in range(5)]
    samples += [generate(3, i, WorldConfig(width=640, height=480)) for i in range(8)]
    assert _digest(samples) == DEFAULT_FRAMES


def test_default_categories_are_unchanged() -> None:
    assert categories() == [("weed", "box"), ("stem", "point")]
    assert categories(WorldConfig()) == [(name, CATEGORY_TYPES[name]) for name in CATEGORIES]
    kinds = {a.category for sample in generate_samples(40, seed=7) for a in sample.annotations}
    assert kinds == set(CATEGORIES)


def test_categories_follow_the_config_in_output_order() -> None:
    assert [name for name, _ in categories(preset("standard"))] == list(ALL_CATEGORIES)
    assert categories(WorldConfig(stems=(0, 0), crops=(1, 2))) == [("weed", "box"), ("crop", "box")]


@pytest.mark.parametrize("name", list(PRESETS))
def test_presets_are_deterministic(name: str) -> None:
    config = preset(name)
    a, b, c = generate(5, 2, config), generate(5, 2, config), generate(5, 3, config)
    assert np.array_equal(a.image, b.image)
    assert a.annotations == b.annotations
    assert not np.array_equal(a.image, c.image)


@pytest.mark.parametrize("name", list(PRESETS))
def test_presets_label_every_category_they_declare_inside_the_frame(name: str) -> None:
    config = replace(preset(name), width=256, height=192)
    samples = generate_samples(30, seed=1, config=config)
    assert all(s.image.shape == (192, 256, 3) and s.image.dtype == np.uint8 for s in samples)
    seen = {a.category for s in samples for a in s.annotations}
    assert seen == {n for n, _ in categories(config)}
    for sample in samples:
        for a in sample.annotations:
            if CATEGORY_TYPES[a.category] == "point":
                assert a.box is None
                assert a.point is not None
                # The centre's pixel is in the frame (one in (-1, 0) truncates to pixel 0, as it always has).
                assert 0 <= int(a.point[0]) < 256
                assert 0 <= int(a.point[1]) < 192
                continue
            assert a.point is None
            assert a.box is not None
            x, y, w, h = a.box
            assert 0 <= x < x + w <= 256
            assert 0 <= y < y + h <= 192


def test_image_effects_never_move_labels() -> None:
    """Clutter, lighting, blur and noise change pixels only; the layout is their own random stream."""
    hard = preset("hard")
    clean = replace(hard, clutter=0.0, lighting=0.0, blur=0.0, noise=0.0)
    for index in range(5):
        a, b = generate(2, index, hard), generate(2, index, clean)
        assert a.annotations == b.annotations
        assert not np.array_equal(a.image, b.image)


def _overlapping_pairs(config: WorldConfig) -> int:
    pairs = 0
    for sample in generate_samples(40, seed=6, config=config):
        boxes = [a.box for a in sample.annotations if a.box is not None]
        for i, (x1, y1, w1, h1) in enumerate(boxes):
            for x2, y2, w2, h2 in boxes[i + 1 :]:
                pairs += x1 < x2 + w2 and x2 < x1 + w1 and y1 < y2 + h2 and y2 < y1 + h1
    return pairs


def test_clustering_makes_objects_overlap() -> None:
    spread = replace(preset("hard"), cluster=0.0)
    assert _overlapping_pairs(replace(spread, cluster=1.0)) > 1.5 * _overlapping_pairs(spread)


def _statistics(difficulty: float) -> dict[str, float]:
    """Means over frames: objects, fine grain (median |Laplacian| of grey), uneven light (spread of
    the brightness of a 4x3 grid over the frame's mean) and the 5th percentile of box sides."""
    samples = generate_samples(40, seed=11, config=at_difficulty(difficulty))
    greys = [cv2.cvtColor(s.image, cv2.COLOR_BGR2GRAY).astype(np.float32) for s in samples]
    return {
        "objects": float(np.mean([len(s.annotations) for s in samples])),
        "grain": float(np.mean([np.median(np.abs(cv2.Laplacian(g, cv2.CV_32F))) for g in greys])),
        "uneven": float(np.mean([cv2.resize(g, (4, 3), interpolation=cv2.INTER_AREA).std() / g.mean() for g in greys])),
        "smallest": float(np.percentile([min(a.box[2:]) for s in samples for a in s.annotations if a.box], 5)),
    }


def test_difficulty_makes_frames_harder() -> None:
    easy, standard, hard = _statistics(0.0), _statistics(0.5), _statistics(1.0)
    assert easy["objects"] < standard["objects"] < hard["objects"]
    assert hard["grain"] > 1.2 * easy["grain"]  # sensor noise
    assert easy["uneven"] < standard["uneven"] < hard["uneven"]  # gradients, vignettes, shadow bands
    assert hard["smallest"] < easy["smallest"]  # smaller objects as the camera rises


def test_difficulty_zero_adds_no_effects() -> None:
    config = at_difficulty(0.0)
    assert (config.clutter, config.lighting, config.blur, config.noise, config.cluster) == (0, 0, 0, 0, 0)
    assert config.scale == (1.0, 1.0)
    assert preset("easy") == config


def test_unknown_preset_and_difficulty_out_of_range_are_refused() -> None:
    with pytest.raises(ValueError, match="easy, standard, hard"):
        preset("extreme")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        at_difficulty(1.5)
