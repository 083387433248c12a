"""model.json for an ONNX file exported by Ultralytics, from what its exporter stores in the file.

Ultralytics' exporter writes the class names, image size, stride, task and export arguments into
the ONNX ``metadata_props``; the graph gives the tensor names and which dimensions are free
(``dynamic=True``). ``model_info`` turns both into the ``ModelInfo`` the detector serves exactly
as ``YOLO(export).predict`` answers: centred letterbox, stride-aligned rectangles for dynamic
sizes, RGB in [0, 1], and Ultralytics' own predict defaults (confidence 0.25, IoU 0.7, 300
objects). Only the file is read: Ultralytics itself is not needed (nor installed) here.
"""

from __future__ import annotations

import ast
from typing import Any

from visionloop.common.v1 import category_pb2, model_pb2
from visionloop.lib.model_format.onnx_graph import Signature, batch_size
from visionloop.runtime.errors import InvalidArgument

SCORE_THRESHOLD, IOU_THRESHOLD, MAX_OBJECTS = 0.25, 0.7, 300  # Ultralytics' predict defaults
_TASKS = {
    "detect": (model_pb2.OUTPUT_DECODER_YOLOV8, category_pb2.CATEGORY_TYPE_BOX),
    "segment": (model_pb2.OUTPUT_DECODER_YOLOV8_SEGMENT, category_pb2.CATEGORY_TYPE_SEGMENTATION),
    "classify": (model_pb2.OUTPUT_DECODER_CLASSIFIER, category_pb2.CATEGORY_TYPE_CLASSIFICATION),
}


def is_ultralytics(signature: Signature) -> bool:
    return signature.metadata.get("author") == "Ultralytics" or {"names", "imgsz", "task"} <= signature.metadata.keys()


def _literal(metadata: dict[str, str], key: str, default: Any = None) -> Any:
    if key not in metadata:
        if default is not None:
            return default
        raise InvalidArgument(f"the ONNX metadata has no {key!r}: re-export the model with Ultralytics' exporter")
    try:
        return ast.literal_eval(metadata[key])  # Python literals: written with str(), read without eval
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        raise InvalidArgument(f"the ONNX metadata {key!r} is not readable: {metadata[key][:80]!r}") from None


def _names(metadata: dict[str, str]) -> list[str]:
    names = _literal(metadata, "names")
    if isinstance(names, list):
        names = dict(enumerate(names))
    if not isinstance(names, dict) or not names or sorted(names) != list(range(len(names))):
        raise InvalidArgument("the ONNX metadata 'names' must map class indices 0..C-1 to names")
    return [str(names[index]) for index in range(len(names))]


def _image_size(metadata: dict[str, str]) -> tuple[int, int]:
    """(height, width) the model was exported for."""
    size = _literal(metadata, "imgsz")
    if isinstance(size, int):
        size = [size, size]
    if not isinstance(size, list | tuple) or len(size) != 2 or not all(isinstance(v, int) and v > 0 for v in size):
        raise InvalidArgument(f"the ONNX metadata 'imgsz' must be [height, width], got {metadata['imgsz']!r}")
    return int(size[0]), int(size[1])


def model_info(signature: Signature, category_ids: dict[str, str] | None = None) -> model_pb2.ModelInfo:
    """The ModelInfo of an Ultralytics ONNX export; INVALID_ARGUMENT saying why one cannot be made.

    ``category_ids`` maps class names to the ids they have in a project (the name itself otherwise).
    """
    metadata = signature.metadata
    if not is_ultralytics(signature):
        raise InvalidArgument(
            "the ONNX file has no Ultralytics metadata (names, imgsz, task): write its model.json yourself "
            "and upload a zip of model.onnx + model.json (visionloop models upload)"
        )
    task = metadata.get("task", "detect")
    if task not in _TASKS:
        raise InvalidArgument(f"Ultralytics {task!r} exports are not served; the detector decodes {', '.join(_TASKS)}")
    args = _literal(metadata, "args", {})
    if str(metadata.get("end2end", "False")) == "True" or (isinstance(args, dict) and args.get("nms")):
        raise InvalidArgument(
            "this export has NMS or an NMS-free head built in (end2end / nms=True); export with nms=False "
            "and end2end=False so the detector applies its own NMS"
        )
    if len(signature.inputs) != 1:
        raise InvalidArgument(f"an Ultralytics export has one image input; this graph has {len(signature.inputs)}")
    decoder, category_type = _TASKS[task]
    names = _names(metadata)
    height, width = _image_size(metadata)
    image = signature.inputs[0]
    dynamic_size = (
        image.shape is not None and len(image.shape) == 4 and (image.shape[2] is None or image.shape[3] is None)
    )
    ids = category_ids or {}
    info = model_pb2.ModelInfo(
        format="onnx",
        resolution=max(width, height),
        categories=[category_pb2.Category(id=ids.get(name, name), name=name, type=category_type) for name in names],
        input=model_pb2.ModelInput(
            tensor_name=image.name,
            width=width,
            height=height,
            color_order=model_pb2.COLOR_ORDER_RGB,
            # Classifiers resize the short side and crop the centre (torchvision's Resize + CenterCrop).
            rescale_type=model_pb2.RESCALE_TYPE_CROP if task == "classify" else model_pb2.RESCALE_TYPE_PAD,
            letterbox=model_pb2.LETTERBOX_CENTER,
            stride=int(metadata.get("stride", "32")) if dynamic_size else 0,
        ),
        output=model_pb2.ModelOutput(decoder=decoder, tensor_names=[t.name for t in signature.outputs]),
        detection_defaults=model_pb2.DetectionDefaults(
            score_threshold=SCORE_THRESHOLD,
            iou_threshold=IOU_THRESHOLD,
            max_objects=MAX_OBJECTS if task != "classify" else 5,
        ),
        variant=f"ultralytics-{task}",
        comment=metadata.get("description", "")[:500],
    )
    info.input.batch_size = batch_size(info.input, signature)
    return info
