"""Reading an ONNX file's signature without its weights, and model.json checked against it."""

from __future__ import annotations

import io
import json
from pathlib import Path

import onnx
import pytest

from visionloop.lib.model_format import onnx_graph
from visionloop.lib.model_format.model_json import model_info_from_json
from visionloop.runtime.errors import InvalidArgument
from visionloop.testing.synthetic.models import model_json, yolov8_stub


@pytest.fixture(scope="module")
def stub(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = yolov8_stub(tmp_path_factory.mktemp("onnx") / "stub.onnx", 320, 256)
    model = onnx.load(str(path))
    onnx.helper.set_model_props(model, {"names": "{0: 'red', 1: 'green'}", "task": "detect"})
    onnx.save(model, str(path))
    return path


def test_the_signature_is_what_onnx_reads_and_metadata_comes_along(stub: Path) -> None:
    signature = onnx_graph.read_signature(stub)
    model = onnx.load(str(stub))
    initializers = {i.name for i in model.graph.initializer}
    assert [t.name for t in signature.inputs] == [i.name for i in model.graph.input if i.name not in initializers]
    assert [t.describe() for t in signature.inputs] == ["'images' (float32 ?x3x256x320)"]
    (output,) = model.graph.output
    anchors = output.type.tensor_type.shape.dim[2].dim_value
    assert [t.describe() for t in signature.outputs] == [f"'output0' (float32 ?x6x{anchors})"]
    assert signature.metadata == {"names": "{0: 'red', 1: 'green'}", "task": "detect"}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "no graph"),
        (b"these are not weights", "not an ONNX model"),
        (b"\x3a\xff\xff\xff\x0f" + b"\x00" * 10, "field number 0"),
        (b"\x3a\x64\x5a\x05ab", "ends in the middle"),
    ],
)
def test_what_is_not_onnx_is_refused_with_a_reason(data: bytes, message: str) -> None:
    with pytest.raises(onnx_graph.NotOnnx, match=message):
        onnx_graph.read_signature_from(io.BytesIO(data))


def test_a_truncated_file_is_refused(stub: Path) -> None:
    data = stub.read_bytes()
    with pytest.raises(onnx_graph.NotOnnx):
        onnx_graph.read_signature_from(io.BytesIO(data[: len(data) // 2]))


def info(**changes: object) -> object:
    doc = json.loads(json.dumps(model_json(320, 256)))
    for key, value in changes.items():
        section, _, field = key.partition("__")
        if field:
            doc[section][field] = value
        else:
            doc[section] = value
    return model_info_from_json(doc)


def test_a_model_json_that_fits_has_no_problems(stub: Path) -> None:
    assert onnx_graph.problems(info(), onnx_graph.read_signature(stub)) == []  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"categories": [{"id": "a", "name": "a", "type": "box"}]}, "model.json has 1 categories; output 'output0'"),
        ({"input__tensor_name": "image"}, "input.tensor_name 'image' is not an input of the graph"),
        ({"output__tensor_names": ["boxes"]}, "names 'boxes', which is not an output of the graph"),
        ({"input__width": 640}, "model.json input is 640x256 (width x height); the graph takes 320x256"),
        ({"input__stride": 32}, "input.stride (32) is for graphs of any height and width"),
        ({"output__decoder": "OUTPUT_DECODER_CLASSIFIER"}, "OUTPUT_DECODER_CLASSIFIER reads output 'output0'"),
        ({"categories": []}, "model.json has no categories"),
    ],
)
def test_each_mismatch_is_named(stub: Path, changes: dict[str, object], problem: str) -> None:
    signature = onnx_graph.read_signature(stub)
    found = onnx_graph.problems(info(**changes), signature)  # type: ignore[arg-type]
    assert any(problem in line for line in found), found
    with pytest.raises(InvalidArgument, match=r"model\.json does not fit the ONNX graph"):
        onnx_graph.check(info(**changes), signature)  # type: ignore[arg-type]
