"""Pre-processing transforms and output decoders, checked against hand-computed answers."""

from __future__ import annotations

import numpy as np
import pytest

from visionloop.common.v1 import category_pb2, detection_pb2, model_pb2
from visionloop.detector.v1 import detector_service_pb2 as pb
from visionloop.lib import decoders, postprocess, preprocess

SPEC = model_pb2.ModelInput(width=320, height=320, color_order=model_pb2.COLOR_ORDER_RGB)


def blank(width: int, height: int) -> preprocess.Frame:
    return preprocess.Frame(np.zeros((height, width, 3), np.uint8), "bgr")


@pytest.mark.parametrize(
    ("rescale", "scale", "offset"),
    [
        (model_pb2.RESCALE_TYPE_WARP, (0.5, 320 / 480), (0, 0)),
        (model_pb2.RESCALE_TYPE_PAD, (0.5, 0.5), (0, 0)),
        (model_pb2.RESCALE_TYPE_CROP, (320 / 480, 320 / 480), (-((round(640 * 320 / 480) - 320) // 2), 0)),
    ],
)
def test_transforms_map_back_to_original_pixels(
    rescale: int, scale: tuple[float, float], offset: tuple[int, int]
) -> None:
    tensor, transform = preprocess.prepare(blank(640, 480), SPEC, rescale)
    assert tensor.shape == (3, 320, 320)
    assert tensor.dtype == np.float32
    assert (transform.scale_x, transform.scale_y) == pytest.approx(scale, abs=1e-3)
    assert (transform.offset_x, transform.offset_y) == offset
    xs, ys = transform.to_original(np.array([160.0]), np.array([160.0]))
    if rescale == model_pb2.RESCALE_TYPE_PAD:
        assert (xs[0], ys[0]) == pytest.approx((320, 320))
    else:
        assert (xs[0], ys[0]) == pytest.approx((320, 240), abs=1)  # warp and crop keep the centre


def test_letterbox_pads_below_and_right_with_grey() -> None:
    tensor, _ = preprocess.prepare(preprocess.Frame(np.full((100, 200, 3), 255, np.uint8), "bgr"), SPEC, 0)
    assert tensor[:, 0, 0] == pytest.approx(1.0)
    assert tensor[:, 300, 10] == pytest.approx(preprocess.PAD_VALUE / 255)


def test_colour_order_and_normalisation() -> None:
    pixels = np.zeros((320, 320, 3), np.uint8)
    pixels[..., 2] = 255  # red in BGR
    spec = model_pb2.ModelInput(width=320, height=320, mean=[0.5, 0.5, 0.5], std=[0.5, 0.5, 0.5])
    tensor, _ = preprocess.prepare(preprocess.Frame(pixels, "bgr"), spec, model_pb2.RESCALE_TYPE_WARP)
    assert tensor[0].mean() == pytest.approx(1.0)  # red channel first, (1 - 0.5) / 0.5
    assert tensor[2].mean() == pytest.approx(-1.0)
    spec_bgr = model_pb2.ModelInput(width=320, height=320, color_order=model_pb2.COLOR_ORDER_BGR)
    tensor, _ = preprocess.prepare(preprocess.Frame(pixels, "bgr"), spec_bgr, model_pb2.RESCALE_TYPE_WARP)
    assert tensor[2].mean() == pytest.approx(1.0)


def test_yolov8_decoder_and_nms() -> None:
    prediction = np.zeros((6, 4), np.float32)
    prediction[:4, 0] = (50, 50, 20, 20)  # class 0, 0.9
    prediction[:4, 1] = (52, 50, 20, 20)  # overlaps anchor 0, class 0, 0.8: suppressed
    prediction[:4, 2] = (52, 50, 20, 20)  # same place but class 1: kept unless class-agnostic
    prediction[:4, 3] = (200, 200, 10, 10)  # below threshold
    prediction[4, :2] = (0.9, 0.8)
    prediction[5, 2] = 0.7
    prediction[4, 3] = 0.1
    candidates = decoders.yolov8([prediction], 0.25, 2)
    assert candidates.classes.tolist() == [0, 0, 1]
    assert candidates.boxes[0].tolist() == [40, 40, 60, 60]
    info = model_pb2.ModelInfo(
        version="1.2",
        categories=[
            category_pb2.Category(id="a", name="weed", type=category_pb2.CATEGORY_TYPE_BOX),
            category_pb2.Category(id="b", name="stem", type=category_pb2.CATEGORY_TYPE_POINT),
        ],
        output=model_pb2.ModelOutput(decoder=model_pb2.OUTPUT_DECODER_YOLOV8),
    )
    identity = preprocess.Transform(1.0, 1.0)
    per_class = postprocess.Settings(0.25, 0.5, 10, class_agnostic=False)
    result = postprocess.to_detections(info, [prediction], identity, (640, 480), per_class)
    assert [(b.category_name, round(b.confidence, 2)) for b in result.boxes] == [("weed", 0.9)]
    assert [(p.category_name, p.point.x, p.point.y) for p in result.points] == [("stem", 52.0, 50.0)]
    agnostic = postprocess.Settings(0.25, 0.5, 10, class_agnostic=True)
    result = postprocess.to_detections(info, [prediction], identity, (640, 480), agnostic)
    assert len(result.boxes) == 1
    assert not result.points


def test_segmentation_frame_with_nothing_above_the_threshold_has_no_detections() -> None:
    """A frame where no candidate passes the threshold is an empty answer, not a decoder error."""
    masks, classes = 32, 1
    prediction = np.zeros((4 + classes + masks, 8), np.float32)
    prediction[4] = 0.1  # every anchor below the threshold
    protos = np.ones((masks, 40, 40), np.float32)
    info = model_pb2.ModelInfo(
        version="1.0",
        categories=[category_pb2.Category(id="a", name="weed", type=category_pb2.CATEGORY_TYPE_SEGMENTATION)],
        output=model_pb2.ModelOutput(decoder=model_pb2.OUTPUT_DECODER_YOLOV8_SEGMENT),
    )
    transform = preprocess.Transform(1.0, 1.0, input_width=160, input_height=160)
    settings = postprocess.Settings(0.25, 0.5, 10, class_agnostic=False)
    result = postprocess.to_detections(info, [prediction, protos], transform, (160, 160), settings)
    assert result == detection_pb2.Detections()


@pytest.mark.parametrize("max_objects", [1, 5, 40, 100, 1000])
@pytest.mark.parametrize("class_agnostic", [False, True])
def test_nms_over_the_best_candidates_keeps_what_nms_over_all_keeps(max_objects: int, class_agnostic: bool) -> None:
    """NMS starts on the best max_objects candidates and widens only while too few survive; the
    result must be exactly the first max_objects boxes of NMS over every candidate."""
    rng = np.random.default_rng(max_objects)
    centres = rng.uniform(0, 600, (60, 2))
    # Clusters of overlapping duplicates (as a detector head produces them) plus lone boxes.
    xy = np.concatenate([np.repeat(centres, 6, axis=0) + rng.normal(0, 4, (360, 2)), rng.uniform(0, 600, (90, 2))])
    wh = rng.uniform(10, 60, (xy.shape[0], 2))
    boxes = np.concatenate([xy - wh / 2, xy + wh / 2], axis=1).astype(np.float32)
    candidates = decoders.Candidates(
        rng.integers(0, 3, xy.shape[0]), rng.permutation(xy.shape[0]).astype(np.float32) / xy.shape[0], boxes
    )
    settings = postprocess.Settings(0.0, 0.45, max_objects, class_agnostic)
    kept = postprocess._suppress(candidates, settings)

    shifted = boxes
    if not class_agnostic:
        shifted = boxes + ((boxes.max() + 1.0) * candidates.classes.astype(np.float32))[:, None]
    everything = decoders.nms(shifted, candidates.scores, 0.45)[:max_objects]
    assert kept.scores.tolist() == candidates.scores[everything].tolist()
    assert kept.boxes.tolist() == boxes[everything].tolist()
    assert kept.classes.tolist() == candidates.classes[everything].tolist()
    assert 0 < kept.scores.size <= max_objects


def test_centernet_decoder_finds_peaks() -> None:
    heatmap = np.zeros((2, 10, 10), np.float32)
    heatmap[0, 3, 4] = 0.9
    heatmap[0, 3, 5] = 0.6  # not a local maximum
    heatmap[1, 7, 2] = 0.7
    size = np.full((2, 10, 10), 8.0, np.float32)
    offset = np.full((2, 10, 10), 0.5, np.float32)
    candidates = decoders.centernet([heatmap, size, offset], 0.3, stride=4)
    found = sorted(zip(candidates.classes.tolist(), candidates.boxes.tolist(), strict=True))
    assert found == [(0, [14.0, 10.0, 22.0, 18.0]), (1, [6.0, 26.0, 14.0, 34.0])]


def test_centernet_peaks_are_exactly_the_3x3_local_maxima_above_the_threshold() -> None:
    """Against the definition, cell by cell, on random maps with plateaus and ties at the borders."""
    rng = np.random.default_rng(7)
    for trial in range(40):
        classes, height, width = int(rng.integers(1, 4)), int(rng.integers(1, 12)), int(rng.integers(1, 12))
        heatmap = rng.random((classes, height, width)).astype(np.float32)
        if trial % 2:
            heatmap = np.round(heatmap * 3) / 3  # plateaus: equal neighbours are all peaks
        size = rng.random((2, height, width)).astype(np.float32) * 20
        offset = rng.random((2, height, width)).astype(np.float32)
        threshold = float(rng.choice([0.0, 0.4, 0.9]))
        expected = [
            (c, y, x)
            for c in range(classes)
            for y in range(height)
            for x in range(width)
            if heatmap[c, y, x] >= threshold
            and heatmap[c, y, x] >= heatmap[c, max(0, y - 1) : y + 2, max(0, x - 1) : x + 2].max()
        ]
        found = decoders.centernet([heatmap, size, offset], threshold, 4)
        assert found.classes.tolist() == [c for c, _, _ in expected]
        assert found.scores.tolist() == [float(heatmap[p]) for p in expected]
        centres = (found.boxes[:, :2] + found.boxes[:, 2:]) / 2
        xs = [(x + offset[0, y, x]) * 4 for _, y, x in expected]
        assert centres[:, 0].tolist() == pytest.approx(xs, abs=1e-3)


def test_classifier_turns_logits_into_probabilities() -> None:
    probabilities = decoders.classifier([np.array([2.0, 0.0, -1.0], np.float32)])
    assert probabilities.sum() == pytest.approx(1.0)
    assert probabilities.argmax() == 0
    already = decoders.classifier([np.array([0.1, 0.7, 0.2], np.float32)])
    assert already.tolist() == pytest.approx([0.1, 0.7, 0.2])


def test_settings_fall_back_to_model_defaults() -> None:
    defaults = model_pb2.DetectionDefaults(score_threshold=0.4, iou_threshold=0.6, max_objects=7)
    settings = postprocess.Settings.resolve(pb.DetectOptions(), defaults)
    assert (settings.score_threshold, settings.iou_threshold, settings.max_objects) == pytest.approx((0.4, 0.6, 7))
    settings = postprocess.Settings.resolve(pb.DetectOptions(score_threshold=0.1, max_objects=3), defaults)
    assert (settings.score_threshold, settings.max_objects) == pytest.approx((0.1, 3))
