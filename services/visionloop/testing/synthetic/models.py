"""A tiny, deterministic ONNX detector in the Ultralytics YOLOv8 export layout.

It "detects" colour: the image is averaged over 8x8 cells; each cell is an anchor whose class
scores are sigmoid(k * (mean channel value - 0.5)) for the first ``len(classes)`` RGB channels and
whose box is the cell's centre with a fixed size. Real enough to exercise every part of the
serving path (pre-processing, batching, decoding, NMS, coordinate mapping) with predictable
answers, and small enough to run in microseconds.
"""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from visionloop.lib.model_format.model_json import MODEL_JSON, dumps

CELL = 8


def yolov8_stub(
    path: Path,
    width: int = 320,
    height: int = 320,
    classes: Sequence[str] = ("red", "green"),
    box_size: float = 16.0,
    sharpness: float = 12.0,
) -> Path:
    """Write the model to ``path``: input ``images`` [N,3,H,W] RGB in [0,1], output ``output0`` [N,4+C,A]."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    if not 1 <= len(classes) <= 3:
        raise ValueError("the stub has one class per RGB channel: 1 to 3 classes")
    if width % CELL or height % CELL:
        raise ValueError(f"width and height must be multiples of {CELL}")
    cols, rows = width // CELL, height // CELL
    anchors = cols * rows
    ys, xs = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    boxes = np.stack(
        [
            (xs.ravel() + 0.5) * CELL,
            (ys.ravel() + 0.5) * CELL,
            np.full(anchors, box_size),
            np.full(anchors, box_size),
        ]
    ).astype(np.float32)[None]  # [1, 4, A]
    initializers = [
        numpy_helper.from_array(boxes, "boxes"),
        numpy_helper.from_array(np.array([0.5], np.float32), "half"),
        numpy_helper.from_array(np.array([sharpness], np.float32), "sharpness"),
        numpy_helper.from_array(np.array([0], np.int64), "zero"),
        numpy_helper.from_array(np.array([len(classes)], np.int64), "classes"),
        numpy_helper.from_array(np.array([1], np.int64), "one"),
        numpy_helper.from_array(np.array([4, anchors], np.int64), "box_tail"),
        numpy_helper.from_array(np.array([len(classes), anchors], np.int64), "score_tail"),
    ]
    nodes = [
        helper.make_node("AveragePool", ["images"], ["cells"], kernel_shape=[CELL, CELL], strides=[CELL, CELL]),
        helper.make_node("Sub", ["cells", "half"], ["centred"]),
        helper.make_node("Mul", ["centred", "sharpness"], ["logits"]),
        helper.make_node("Sigmoid", ["logits"], ["probs"]),
        helper.make_node("Slice", ["probs", "zero", "classes", "one"], ["class_maps"]),
        helper.make_node("Shape", ["images"], ["in_shape"]),
        helper.make_node("Slice", ["in_shape", "zero", "one"], ["batch"]),
        helper.make_node("Concat", ["batch", "score_tail"], ["score_shape"], axis=0),
        helper.make_node("Reshape", ["class_maps", "score_shape"], ["scores"]),
        helper.make_node("Concat", ["batch", "box_tail"], ["box_shape"], axis=0),
        helper.make_node("Expand", ["boxes", "box_shape"], ["batch_boxes"]),
        helper.make_node("Concat", ["batch_boxes", "scores"], ["output0"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "yolov8_stub",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, height, width])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["N", 4 + len(classes), anchors])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="visionloop")
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def model_json(
    width: int = 320,
    height: int = 320,
    classes: Sequence[str] = ("red", "green"),
    category_ids: Sequence[str] | None = None,
) -> dict[str, object]:
    """The model.json describing the stub (layout, input, categories) as the detector reads it."""
    ids = list(category_ids) if category_ids else [f"category-{name}" for name in classes]
    return {
        "format": "onnx",
        "resolution": max(width, height),
        "categories": [{"id": i, "name": n, "type": "box"} for i, n in zip(ids, classes, strict=True)],
        "input": {
            "tensor_name": "images",
            "width": width,
            "height": height,
            "color_order": "COLOR_ORDER_RGB",
            "rescale_type": "RESCALE_TYPE_PAD",
        },
        "output": {"decoder": "OUTPUT_DECODER_YOLOV8", "tensor_names": ["output0"]},
        "detection_defaults": {"score_threshold": 0.5, "iou_threshold": 0.45, "max_objects": 100},
        "variant": "yolov8_stub",
    }


def model_zip(path: Path, width: int = 320, height: int = 320, classes: Sequence[str] = ("red", "green")) -> Path:
    """A model zip (model.onnx + model.json) as the hub stores it, for the ``onnx`` format."""
    onnx_path = yolov8_stub(path.with_suffix(".onnx"), width, height, classes)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.write(onnx_path, "model.onnx")
        archive.writestr(MODEL_JSON, dumps(model_json(width, height, classes)))
    onnx_path.unlink()
    return path
