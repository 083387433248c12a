"""Triton model-repository entries that serve an ONNX model through Triton's python backend.

A CPU-only Triton (the ``tritonserver`` binary shipped in the ``nvidia-pytriton`` wheel, for one)
has no onnxruntime backend, but it does have the python backend. An entry written here is::

    <repository>/<model_name>/config.pbtxt        backend "python", batching, I/O specs
    <repository>/<model_name>/<version>/model.py  TritonPythonModel running ONNX Runtime
    <repository>/<model_name>/<version>/model.onnx

``model.py`` is the same file for every model: it reads the input and output names from the
model configuration Triton hands it, so nothing model-specific is pasted into Python source.
The python backend stub must be able to import numpy and onnxruntime (see the test harness in
``tests/detector/triton_server.py`` for how the server is pointed at a virtual environment).
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

# Source of every entry's model.py. Requests that the dynamic batcher hands over together are
# concatenated into one ONNX Runtime run (that is what batching is for) and split again after.
MODEL_PY = '''\
"""Triton python-backend model: runs the model.onnx beside this file with ONNX Runtime.

Written by visionloop.detector.triton_repository; the tensor names come from config.pbtxt.
"""

import json
import os
import sys

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils

# Tensors cross into and out of the stub through DLPack, not as_numpy()/Tensor(name, array): the
# stubs in nvidia-pytriton 0.7.0 were built against numpy 1, and with numpy 2 those two read the
# wrong item size (inputs come back garbled, outputs empty). DLPack involves no numpy C structs.
_SPURIOUS = "PyCapsule_GetPointer called with incorrect name"


def _quiet_capsule_hook(unraisable, _previous=sys.unraisablehook):
    # The stub marks a consumed capsule "used_dlpack" where the DLPack protocol says
    # "used_dltensor", so numpy's capsule destructor reports an error on every output; the stub
    # releases the array itself. Drop exactly that report, pass everything else on.
    if isinstance(unraisable.exc_value, ValueError) and str(unraisable.exc_value) == _SPURIOUS:
        return
    _previous(unraisable)


sys.unraisablehook = _quiet_capsule_hook


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.input_name = config["input"][0]["name"]
        self.output_names = [output["name"] for output in config["output"]]
        parameters = config.get("parameters", {})
        threads = int(parameters.get("intra_op_num_threads", {}).get("string_value", "0") or 0)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads  # 0: ONNX Runtime's default (one per core)
        onnx_path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "model.onnx")
        self.session = ort.InferenceSession(onnx_path, options, providers=["CPUExecutionProvider"])

    def execute(self, requests):
        batches = [
            np.from_dlpack(pb_utils.get_input_tensor_by_name(request, self.input_name)) for request in requests
        ]
        try:
            feed = np.concatenate(batches) if len(batches) > 1 else batches[0]
            results = self.session.run(self.output_names, {self.input_name: feed})
        except Exception as error:  # one failed run fails every request it carried
            message = f"ONNX Runtime failed: {error}"
            return [pb_utils.InferenceResponse(error=pb_utils.TritonError(message)) for _ in requests]
        responses = []
        start = 0
        for batch in batches:
            stop = start + len(batch)
            tensors = [
                pb_utils.Tensor.from_dlpack(name, np.ascontiguousarray(result[start:stop]))
                for name, result in zip(self.output_names, results, strict=True)
            ]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            start = stop
        return responses

    def finalize(self):
        self.session = None
'''


def write_python_backend_entry(
    repository: Path,
    model_name: str,
    onnx_path: Path,
    input_name: str,
    input_dims: Sequence[int],
    output_names: Sequence[str],
    output_dims: Sequence[Sequence[int]],
    max_batch_size: int = 16,
    version: int = 1,
    max_queue_delay_us: int = 500,
    intra_op_num_threads: int = 0,
) -> Path:
    """Write version ``version`` of the entry ``<repository>/<model_name>`` (overwriting it and the
    entry's config.pbtxt) and return the entry's folder. Other versions already there are kept.

    ``input_dims`` is (C, H, W) and each of ``output_dims`` an output's shape, all without the
    batch dimension, which Triton adds because ``max_batch_size`` > 0; -1 marks a free dimension.
    ``max_queue_delay_us`` is how long the dynamic batcher may hold a request to fill a batch.
    ``intra_op_num_threads`` caps ONNX Runtime's threads per model instance (0: one per core).
    """
    if max_batch_size < 1:
        raise ValueError("max_batch_size must be at least 1: the detector sends batches, N first")
    if len(output_names) != len(output_dims):
        raise ValueError("output_names and output_dims must have the same length")
    if not output_names:
        raise ValueError("a model needs at least one output")
    entry = repository / model_name
    version_dir = entry / str(version)
    version_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(onnx_path, version_dir / "model.onnx")
    (version_dir / "model.py").write_text(MODEL_PY)
    config = model_config(
        model_name,
        input_name,
        input_dims,
        output_names,
        output_dims,
        max_batch_size=max_batch_size,
        max_queue_delay_us=max_queue_delay_us,
        intra_op_num_threads=intra_op_num_threads,
    )
    (entry / "config.pbtxt").write_text(config)
    return entry


def model_config(
    model_name: str,
    input_name: str,
    input_dims: Sequence[int],
    output_names: Sequence[str],
    output_dims: Sequence[Sequence[int]],
    max_batch_size: int,
    max_queue_delay_us: int,
    intra_op_num_threads: int,
) -> str:
    """The config.pbtxt text (protobuf text format) of a python-backend entry."""
    outputs = ",\n".join(_tensor(name, dims) for name, dims in zip(output_names, output_dims, strict=True))
    return (
        f"name: {_quote(model_name)}\n"
        'backend: "python"\n'
        f"max_batch_size: {max_batch_size}\n"
        f"dynamic_batching {{ max_queue_delay_microseconds: {max_queue_delay_us} }}\n"
        "instance_group [ { kind: KIND_CPU, count: 1 } ]\n"
        f"input [\n{_tensor(input_name, input_dims)}\n]\n"
        f"output [\n{outputs}\n]\n"
        'parameters { key: "intra_op_num_threads" '
        f"value {{ string_value: {_quote(str(intra_op_num_threads))} }} }}\n"
    )


def _tensor(name: str, dims: Sequence[int]) -> str:
    shape = ", ".join(str(int(d)) for d in dims)
    return f"  {{ name: {_quote(name)}, data_type: TYPE_FP32, dims: [ {shape} ] }}"


def _quote(text: str) -> str:
    # protobuf text format strings: escape the two characters that could end or break the literal
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
