"""ONNX graphs: reading their tensors, running them, changing their opset and precision.

Converted models keep FP32 inputs and outputs (FP16 casts inside the graph, INT8 quantizes
inside it), so the detector, its pre-processing and every Triton config stay the same.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from visionloop.server.converter.errors import ConversionFailed
from visionloop.server.converter.exporters import Runner

# ONNX element types -> Triton config data types (what a detector model may use).
TRITON_TYPES = {
    1: "TYPE_FP32",
    10: "TYPE_FP16",
    11: "TYPE_FP64",
    2: "TYPE_UINT8",
    3: "TYPE_INT8",
    6: "TYPE_INT32",
    7: "TYPE_INT64",
    9: "TYPE_BOOL",
}


@dataclass(frozen=True)
class Tensor:
    """A graph input or output: ONNX element type and shape, -1 for a free dimension."""

    name: str
    elem_type: int
    shape: tuple[int, ...]

    @property
    def triton_type(self) -> str:
        try:
            return TRITON_TYPES[self.elem_type]
        except KeyError:
            raise ConversionFailed(
                f"tensor {self.name!r} has ONNX element type {self.elem_type}, which Triton entries do not take"
            ) from None


def _load(path: Path) -> object:
    import onnx

    try:
        return onnx.load(str(path))
    except Exception as error:  # DecodeError and friends for broken files
        raise ConversionFailed(f"{path.name} is not a readable ONNX model: {error}") from None


def tensors(path: Path) -> tuple[list[Tensor], list[Tensor]]:
    """The graph's inputs (initializers left out) and outputs."""
    model = _load(path)
    graph = model.graph  # type: ignore[attr-defined]
    initializers = {init.name for init in graph.initializer}

    def describe(value: object) -> Tensor:
        kind = value.type.tensor_type  # type: ignore[attr-defined]
        dims = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else -1 for d in kind.shape.dim)
        return Tensor(value.name, kind.elem_type, dims)  # type: ignore[attr-defined]

    inputs = [describe(v) for v in graph.input if v.name not in initializers]
    return inputs, [describe(v) for v in graph.output]


def check_dynamic_batch(path: Path) -> None:
    """Every input and output must have a free first (batch) dimension: Triton and the detector batch."""
    inputs, outputs = tensors(path)
    for tensor in [*inputs, *outputs]:
        if not tensor.shape:
            raise ConversionFailed(f"tensor {tensor.name!r} has no shape; the batch dimension must come first")
        if tensor.shape[0] != -1:
            raise ConversionFailed(
                f"tensor {tensor.name!r} has a fixed batch size {tensor.shape[0]}; export with a dynamic batch axis"
            )


def opset(path: Path) -> int:
    model = _load(path)
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)  # type: ignore[attr-defined]


def convert_opset(path: Path, version: int) -> None:
    """Rewrite ``path`` at opset ``version`` (ONNX's version converter); no-op when it already is."""
    import onnx
    from onnx import version_converter

    if opset(path) == version:
        return
    newest = onnx.defs.onnx_opset_version()
    if version > newest:
        raise ConversionFailed(f"opset {version} is newer than this converter's ONNX knows ({newest})", permanent=True)
    try:
        converted = version_converter.convert_version(onnx.load(str(path)), version)
        onnx.checker.check_model(converted)
    except Exception as error:
        raise ConversionFailed(f"the model cannot be converted to opset {version}: {error}") from None
    onnx.save(converted, str(path))


def onnx_runner(path: Path, output_names: Sequence[str] = ()) -> Runner:
    """Run ``path`` on ONNX Runtime's CPU provider; outputs in ``output_names`` order (default: the graph's)."""
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as error:
        raise ConversionFailed(f"ONNX Runtime cannot load {path.name}: {error}") from None
    input_name = session.get_inputs()[0].name
    names = list(output_names) or [o.name for o in session.get_outputs()]

    def run(batch: np.ndarray) -> list[np.ndarray]:
        return [np.asarray(a) for a in session.run(names, {input_name: batch})]

    return run


def to_fp16(source: Path, target: Path) -> None:
    """FP16 weights and compute, FP32 inputs and outputs."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    try:
        converted = convert_float_to_float16(onnx.load(str(source)), keep_io_types=True)
    except Exception as error:
        raise ConversionFailed(f"FP16 conversion failed: {error}") from None
    onnx.save(converted, str(target))


def to_int8_dynamic(source: Path, target: Path) -> None:
    """INT8 weights, activations quantized at run time (no calibration)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    try:
        # uint8 weights: ONNX Runtime's ConvInteger kernels take uint8 on every CPU
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QUInt8)
    except Exception as error:
        raise ConversionFailed(f"INT8 (dynamic) quantization failed: {error}") from None


def to_int8_static(source: Path, target: Path, calibration: Sequence[np.ndarray]) -> None:
    """INT8 weights and activations (QDQ), activation ranges calibrated on ``calibration`` ([3,H,W] each)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    if not calibration:
        raise ConversionFailed("static INT8 quantization needs calibration images; the project has none")
    inputs, _ = tensors(source)
    name = inputs[0].name

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._items: Iterator[np.ndarray] = iter(calibration)

        def get_next(self) -> dict[str, np.ndarray] | None:
            item = next(self._items, None)
            return None if item is None else {name: item[None]}

    try:
        quantize_static(str(source), str(target), Reader(), quant_format=QuantFormat.QDQ, per_channel=True)
    except Exception as error:
        raise ConversionFailed(f"INT8 (static) quantization failed: {error}") from None
