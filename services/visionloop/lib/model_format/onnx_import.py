"""An ONNX export a user brings (`visionloop models import`), as the model zip the hub and detectors take.

An Ultralytics export carries everything its model.json needs (class names, image size, stride,
task) in the ONNX metadata, and its graph tells the tensor names, the batch dimension and whether
height and width are free: ``visionloop.lib.model_format.ultralytics`` writes the model.json from both, the
result is checked against the graph as the hub and the detector check it, and zipped with the ONNX.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from visionloop.common.v1 import model_pb2
from visionloop.lib.model_format import onnx_graph, ultralytics
from visionloop.lib.model_format.model_json import info_to_json, pack, write_model_json


def model_info(export: Path, category_ids: dict[str, str] | None = None) -> model_pb2.ModelInfo:
    """The model.json of ``export`` (an ONNX file); INVALID_ARGUMENT saying why there is none."""
    signature = onnx_graph.read_signature(export)
    info = ultralytics.model_info(signature, category_ids)
    onnx_graph.check(info, signature)
    return info


def write_zip(export: Path, info: model_pb2.ModelInfo, archive: Path) -> Path:
    """``archive``: model.json for ``info`` and the export as model.onnx (what DETECTOR_MODEL_PATHS takes)."""
    with tempfile.TemporaryDirectory(prefix="visionloop-import-") as folder:
        staging = Path(folder)
        shutil.copyfile(export, staging / "model.onnx")
        write_model_json(staging, info_to_json(info))
        archive.parent.mkdir(parents=True, exist_ok=True)
        partial = archive.with_name(f".{archive.name}.partial")
        pack(staging, partial)
        partial.replace(archive)
    return archive


def describe(info: model_pb2.ModelInfo) -> str:
    """One line on what the detector will do with the model."""
    spec = info.input
    task = info.variant.removeprefix("ultralytics-") or "model"
    batch = f"batch {spec.batch_size}" if spec.batch_size else "any batch"
    size = (
        f"any size (stride {spec.stride}, up to {spec.width}x{spec.height})"
        if spec.stride
        else f"{spec.width}x{spec.height}"
    )
    names = ", ".join(c.name for c in info.categories[:8]) + (", ..." if len(info.categories) > 8 else "")
    return f"{task}, {len(info.categories)} classes ({names}), input {size}, {batch}"
