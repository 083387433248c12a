"""What an ONNX file promises from outside: its inputs, outputs and metadata, read without its weights.

``read_signature`` walks the protobuf wire format of the file and parses only the small messages
it needs (the graph's inputs and outputs, initializer names, ``metadata_props``), skipping node
and weight bytes as it goes. A model of gigabytes costs a forward pass over the file and a few
kilobytes of memory, whatever it claims, and the file may be a stream (a zip entry): it is only
read forward.

``problems`` checks a ``ModelInfo`` (model.json) against a signature: the tensors it names exist
with the ranks, element types and sizes the decoder needs, the class count matches the outputs,
and the batch and image sizes match what the graph takes. The hub refuses an upload whose
model.json does not fit its graph (``INVALID_ARGUMENT``), the detector refuses to load it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from visionloop.common.v1 import model_pb2
from visionloop.runtime.errors import InvalidArgument

FLOAT, FLOAT16 = 1, 10  # ONNX TensorProto element types the detector feeds and decodes
_TYPE_NAMES = {1: "float32", 10: "float16", 11: "float64", 2: "uint8", 3: "int8", 6: "int32", 7: "int64", 9: "bool"}
_MAX_MESSAGE = 1 << 20  # a value info or metadata entry larger than this is not a model description
# Field numbers (onnx.proto3)
_MODEL_GRAPH, _MODEL_METADATA = 7, 14
_GRAPH_INITIALIZER, _GRAPH_INPUT, _GRAPH_OUTPUT = 5, 11, 12
_TENSOR_NAME = 8


class NotOnnx(InvalidArgument):
    """The bytes are not an ONNX model."""


@dataclass(frozen=True)
class Tensor:
    """A graph input or output: element type and shape, None for a free (dynamic) dimension."""

    name: str
    elem_type: int
    shape: tuple[int | None, ...] | None  # None when the graph declares no shape

    @property
    def type_name(self) -> str:
        return _TYPE_NAMES.get(self.elem_type, f"type {self.elem_type}")

    def describe(self) -> str:
        dims = "x".join("?" if d is None else str(d) for d in self.shape) if self.shape is not None else "unknown shape"
        return f"{self.name!r} ({self.type_name} {dims})"


@dataclass(frozen=True)
class Signature:
    inputs: list[Tensor]  # initializers listed as inputs (old exporters) left out
    outputs: list[Tensor]
    metadata: dict[str, str] = field(default_factory=dict)

    def output(self, name: str) -> Tensor | None:
        return next((t for t in self.outputs if t.name == name), None)

    def input(self, name: str) -> Tensor | None:
        return next((t for t in self.inputs if t.name == name), None)


# --- reading --------------------------------------------------------------------------------------


class _Reader:
    """Forward-only protobuf wire reading over a binary stream."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self.offset = 0

    def _read(self, count: int) -> bytes:
        data = self._stream.read(count)
        if len(data) != count:
            raise NotOnnx("the ONNX file ends in the middle of a message (truncated?)")
        self.offset += count
        return data

    def skip(self, count: int) -> None:
        while count > 0:  # read and drop: a zip entry cannot seek cheaply, a file reads as fast
            step = min(count, 1 << 20)
            self._read(step)
            count -= step

    def varint(self) -> int:
        result = shift = 0
        while True:
            byte = self._read(1)[0]
            result |= (byte & 0x7F) << shift
            if byte < 0x80:
                return result
            shift += 7
            if shift > 63:
                raise NotOnnx("the file is not an ONNX model (a malformed varint)")

    def fields(self, end: int | None) -> _Fields:
        return _Fields(self, end)

    def message(self, length: int) -> bytes:
        if length > _MAX_MESSAGE:
            raise NotOnnx(f"an ONNX graph input, output or metadata entry of {length} bytes is not plausible")
        return self._read(length)


class _Fields:
    """(field number, wire type, length) of each field up to ``end``; a length-delimited field's
    bytes not read by the caller are skipped before the next field."""

    def __init__(self, reader: _Reader, end: int | None) -> None:
        self._reader, self._end = reader, end
        self._after = -1

    def __iter__(self) -> _Fields:
        return self

    def __next__(self) -> tuple[int, int, int]:
        reader = self._reader
        if self._after >= 0 and reader.offset < self._after:
            reader.skip(self._after - reader.offset)
        if self._end is not None and reader.offset >= self._end:
            raise StopIteration
        if self._end is None:
            first = reader._stream.read(1)
            if not first:
                raise StopIteration
            reader.offset += 1
            key = first[0] if first[0] < 0x80 else (first[0] & 0x7F) | (reader.varint() << 7)
        else:
            key = reader.varint()
        number, wire = key >> 3, key & 7
        if number == 0:
            raise NotOnnx("the file is not an ONNX model (field number 0)")
        if wire == 0:
            reader.varint()
            length = 0
        elif wire == 1:
            reader.skip(8)
            length = 0
        elif wire == 5:
            reader.skip(4)
            length = 0
        elif wire == 2:
            length = reader.varint()
            if self._end is not None and reader.offset + length > self._end:
                raise NotOnnx("the file is not an ONNX model (a field runs past its message)")
        else:
            raise NotOnnx(f"the file is not an ONNX model (wire type {wire})")
        self._after = reader.offset + length if wire == 2 else -1
        return number, wire, length


def _tensor(raw: bytes) -> Tensor:
    import onnx

    value = onnx.ValueInfoProto.FromString(raw)
    tensor_type = value.type.tensor_type
    shape: tuple[int | None, ...] | None = None
    if tensor_type.HasField("shape"):
        shape = tuple(
            d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in tensor_type.shape.dim
        )
    return Tensor(value.name, tensor_type.elem_type, shape)


def _initializer_name(reader: _Reader, end: int) -> str:
    name = ""
    for number, wire, length in reader.fields(end):
        if number == _TENSOR_NAME and wire == 2:
            name = reader.message(length).decode("utf-8", "replace")
    return name


def read_signature_from(stream: BinaryIO) -> Signature:
    """The signature of the ONNX model in ``stream`` (read forward once); NotOnnx when it is none."""
    import onnx
    from google.protobuf.message import DecodeError

    reader = _Reader(stream)
    inputs: list[Tensor] = []
    outputs: list[Tensor] = []
    initializers: set[str] = set()
    metadata: dict[str, str] = {}
    graphs = 0
    try:
        for number, wire, length in reader.fields(None):
            if number == _MODEL_GRAPH and wire == 2:
                graphs += 1
                end = reader.offset + length
                for inner, inner_wire, inner_length in reader.fields(end):
                    if inner_wire != 2:
                        continue
                    if inner == _GRAPH_INPUT:
                        inputs.append(_tensor(reader.message(inner_length)))
                    elif inner == _GRAPH_OUTPUT:
                        outputs.append(_tensor(reader.message(inner_length)))
                    elif inner == _GRAPH_INITIALIZER:
                        initializers.add(_initializer_name(reader, reader.offset + inner_length))
            elif number == _MODEL_METADATA and wire == 2:
                entry = onnx.StringStringEntryProto.FromString(reader.message(length))
                metadata[entry.key] = entry.value
    except DecodeError as error:
        raise NotOnnx(f"the file is not an ONNX model: {error}") from None
    if graphs != 1 or not outputs:
        raise NotOnnx("the file is not an ONNX model (no graph with outputs)")
    return Signature([t for t in inputs if t.name not in initializers], outputs, metadata)


def read_signature(path: Path) -> Signature:
    with path.open("rb") as stream:
        return read_signature_from(stream)


# --- checking model.json against it ---------------------------------------------------------------

_DECODER_OUTPUTS = {
    model_pb2.OUTPUT_DECODER_YOLOV8: 1,
    model_pb2.OUTPUT_DECODER_YOLOV8_SEGMENT: 2,
    model_pb2.OUTPUT_DECODER_VISIONLOOP_CENTERNET: 3,
    model_pb2.OUTPUT_DECODER_CLASSIFIER: 1,
}


def batch_size(info: model_pb2.ModelInput, signature: Signature) -> int:
    """Images per inference the graph takes: its fixed batch dimension, else model.json's (0: any)."""
    tensor = signature.input(info.tensor_name or "images")
    if tensor is not None and tensor.shape and tensor.shape[0] is not None:
        return tensor.shape[0]
    return max(0, info.batch_size)


def _input_problems(spec: model_pb2.ModelInput, signature: Signature) -> list[str]:
    name = spec.tensor_name or "images"
    tensor = signature.input(name)
    listed = ", ".join(t.describe() for t in signature.inputs) or "none"
    if tensor is None:
        return [f"model.json input.tensor_name {name!r} is not an input of the graph (inputs: {listed})"]
    problems = []
    if len(signature.inputs) > 1:
        problems.append(f"the graph has {len(signature.inputs)} inputs ({listed}); the detector feeds one image")
    if tensor.elem_type not in (FLOAT, FLOAT16):
        problems.append(f"input {tensor.describe()} is not float32 or float16")
    shape = tensor.shape
    if shape is None:
        return problems
    if len(shape) != 4 or shape[1] not in (None, 3):
        return [*problems, f"input {tensor.describe()} is not an image batch [N, 3, height, width]"]
    batch, height, width = shape[0], shape[2], shape[3]
    if batch is not None and spec.batch_size and batch != spec.batch_size:
        problems.append(f"model.json input.batch_size is {spec.batch_size}; the graph takes batches of {batch}")
    fixed = height is not None and width is not None
    if fixed and (height, width) != (spec.height, spec.width):
        problems.append(
            f"model.json input is {spec.width}x{spec.height} (width x height); the graph takes {width}x{height}"
        )
    if spec.stride and (height is not None or width is not None):
        problems.append(
            f"model.json input.stride ({spec.stride}) is for graphs of any height and width; input {tensor.describe()} "
            "has a fixed size (set stride to 0)"
        )
    if not spec.stride and not fixed:
        problems.append(
            f"input {tensor.describe()} takes any height and width: set model.json input.stride (e.g. 32) so frames "
            "are letterboxed to multiples of it, as the model was exported for"
        )
    return problems


def _classes(tensor: Tensor, axis: int) -> int | None:
    return tensor.shape[axis] if tensor.shape is not None and len(tensor.shape) > axis else None


def _output_problems(info: model_pb2.ModelInfo, signature: Signature) -> list[str]:
    decoder = info.output.decoder
    names = list(info.output.tensor_names)
    listed = ", ".join(t.describe() for t in signature.outputs)
    wanted = _DECODER_OUTPUTS.get(decoder)
    if wanted is None:
        return ["model.json output.decoder is missing or unknown; the detector cannot decode this model"]
    decoder_name = model_pb2.OutputDecoder.Name(decoder)
    if len(names) != wanted:
        return [
            f"model.json output.tensor_names names {len(names)} outputs; {decoder_name} reads {wanted} "
            f"(the graph's: {listed})"
        ]
    tensors = []
    for name in names:
        tensor = signature.output(name)
        if tensor is None:
            return [f"model.json output.tensor_names names {name!r}, which is not an output of the graph ({listed})"]
        tensors.append(tensor)
    problems = [
        f"output {t.describe()} is not float32 or float16" for t in tensors if t.elem_type not in (FLOAT, FLOAT16)
    ]
    classes = len(info.categories)
    first = tensors[0]
    ranks = {
        model_pb2.OUTPUT_DECODER_YOLOV8: [3],
        model_pb2.OUTPUT_DECODER_YOLOV8_SEGMENT: [3, 4],
        model_pb2.OUTPUT_DECODER_VISIONLOOP_CENTERNET: [4, 4, 4],
        model_pb2.OUTPUT_DECODER_CLASSIFIER: [2],
    }[decoder]
    for tensor, rank in zip(tensors, ranks, strict=True):
        if tensor.shape is not None and len(tensor.shape) != rank:
            problems.append(f"{decoder_name} reads output {tensor.describe()} as rank {rank}")
    if problems:
        return problems
    channels = _classes(first, 1)
    if decoder == model_pb2.OUTPUT_DECODER_YOLOV8 and channels is not None and channels != 4 + classes:
        problems.append(
            f"model.json has {classes} categories; output {first.describe()} holds {channels - 4} classes "
            "(4 box values + one score per class)"
        )
    elif decoder == model_pb2.OUTPUT_DECODER_YOLOV8_SEGMENT:
        masks = _classes(tensors[1], 1)
        if channels is not None and masks is not None and channels != 4 + classes + masks:
            problems.append(
                f"model.json has {classes} categories; output {first.describe()} holds {channels - 4 - masks} classes "
                f"(4 box values + one score per class + {masks} mask coefficients)"
            )
    elif (
        decoder in (model_pb2.OUTPUT_DECODER_CLASSIFIER, model_pb2.OUTPUT_DECODER_VISIONLOOP_CENTERNET)
        and channels is not None
        and channels != classes
    ):
        problems.append(f"model.json has {classes} categories; output {first.describe()} holds {channels} classes")
    return problems


def problems(info: model_pb2.ModelInfo, signature: Signature) -> list[str]:
    """What in ``info`` (model.json) does not fit the graph; empty when the detector can serve it."""
    found = []
    if not info.categories:
        found.append("model.json has no categories; list them in the order the model outputs them")
    if info.input.width <= 0 or info.input.height <= 0:
        found.append("model.json input.width and input.height must be set")
    if info.input.batch_size < 0 or info.input.stride < 0:
        found.append("model.json input.batch_size and input.stride must not be negative")
    return found + _input_problems(info.input, signature) + _output_problems(info, signature)


def check(info: model_pb2.ModelInfo, signature: Signature) -> None:
    """INVALID_ARGUMENT listing every problem ``problems`` finds."""
    found = problems(info, signature)
    if found:
        raise InvalidArgument("model.json does not fit the ONNX graph: " + "; ".join(found))
