"""Triton model-repository entries for an ONNX model, in two variants.

``triton_python`` (python backend, runs on a CPU-only Triton such as the ``tritonserver`` in the
``nvidia-pytriton`` wheel, which has no onnxruntime backend)::

    <name>/config.pbtxt        backend "python", batching, I/O specs
    <name>/1/model.py          TritonPythonModel running ONNX Runtime
    <name>/1/model.onnx

``triton_onnx`` (Triton's onnxruntime backend, for GPU clusters; optional TensorRT accelerator)::

    <name>/config.pbtxt        platform "onnxruntime_onnx"
    <name>/1/model.onnx

config.pbtxt is built as Triton's own ``ModelConfig`` message (shipped with tritonclient) and
printed in protobuf text format, so it is valid by construction. ``model.py`` is the same file
for every model: it reads the tensor names from the model configuration Triton hands it.
The python backend stub must be able to import numpy and onnxruntime (see the test harness in
``tests/detector/triton_server.py`` for how the server is pointed at a virtual environment).
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

PYTHON = "triton_python"
ONNX = "triton_onnx"
VERSION = 1  # an entry holds one model version; a new hub version is a new entry

# Source of every python-backend entry's model.py. Requests that the dynamic batcher hands over
# together are concatenated into one ONNX Runtime run (that is what batching is for) and split again.
MODEL_PY = '''\
"""Triton python-backend model: runs the model.onnx beside this file with ONNX Runtime.

Written by visionloop.lib.model_format.triton; the tensor names come from config.pbtxt.
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
        # Spinning workers would keep the cores busy between requests, starving whatever shares the
        # machine with a CPU Triton (a detector decoding frames, the stub's own request copies).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
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


@dataclass(frozen=True)
class TensorSpec:
    """One input or output: Triton data type (e.g. TYPE_FP32) and dims without the batch dimension."""

    name: str
    dims: Sequence[int]
    data_type: str = "TYPE_FP32"


@dataclass(frozen=True)
class EntryOptions:
    max_batch_size: int = 16
    instances: int = 1  # per device (GPU) or in all (CPU)
    max_queue_delay_us: int = 100  # how long the dynamic batcher may hold a request to fill a batch
    gpu: bool = True  # triton_onnx only: KIND_GPU, else KIND_CPU (python entries always run on CPUs)
    tensorrt: bool = False  # triton_onnx only
    tensorrt_precision: str = "FP16"
    intra_op_num_threads: int = 0  # python entries: ONNX Runtime threads per instance (0: one per core)
    parameters: dict[str, str] = field(default_factory=dict)


def entry_name(organization: str, project: str, version: str, fmt: str) -> str:
    """The repository entry (Triton model name) of a hub model version in ``fmt``: one entry per version
    and format, so entries never change once written and a swap is a load of another name.
    Organization and project names hold no dots, so the name is unambiguous."""
    return f"{organization}.{project}.{version}.{fmt}"


def _config(
    name: str, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec], options: EntryOptions
) -> mc.ModelConfig:
    if options.max_batch_size < 1:
        raise ValueError("max_batch_size must be at least 1: the detector sends batches, N first")
    if not inputs or not outputs:
        raise ValueError("an entry needs at least one input and one output")
    config = mc.ModelConfig(name=name, max_batch_size=options.max_batch_size)
    config.dynamic_batching.max_queue_delay_microseconds = options.max_queue_delay_us
    for spec, target in [(s, config.input) for s in inputs] + [(s, config.output) for s in outputs]:
        target.add(name=spec.name, data_type=mc.DataType.Value(spec.data_type), dims=[int(d) for d in spec.dims])
    for key, value in options.parameters.items():
        config.parameters[key].string_value = value
    return config


def python_config(name: str, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec], options: EntryOptions) -> str:
    """config.pbtxt of a python-backend entry."""
    config = _config(name, inputs, outputs, options)
    config.backend = "python"
    config.instance_group.add(kind=mc.ModelInstanceGroup.KIND_CPU, count=options.instances)
    config.parameters["intra_op_num_threads"].string_value = str(options.intra_op_num_threads)
    return text_format.MessageToString(config)


def onnxruntime_config(
    name: str, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec], options: EntryOptions
) -> str:
    """config.pbtxt of an onnxruntime_onnx entry, with the TensorRT accelerator block when asked."""
    config = _config(name, inputs, outputs, options)
    config.platform = "onnxruntime_onnx"
    kind = mc.ModelInstanceGroup.KIND_GPU if options.gpu else mc.ModelInstanceGroup.KIND_CPU
    config.instance_group.add(kind=kind, count=options.instances)
    if options.tensorrt:
        accelerator = config.optimization.execution_accelerators.gpu_execution_accelerator.add(name="tensorrt")
        accelerator.parameters["precision_mode"] = options.tensorrt_precision
        accelerator.parameters["max_workspace_size_bytes"] = str(1 << 30)
    return text_format.MessageToString(config)


def entry_files(
    fmt: str,
    name: str,
    onnx_path: Path,
    inputs: Sequence[TensorSpec],
    outputs: Sequence[TensorSpec],
    options: EntryOptions,
    version: int = VERSION,
) -> dict[str, Path | bytes]:
    """The entry's files by path relative to the entry folder; config.pbtxt last, so whoever writes
    them in order never shows Triton a config whose model files are not there yet."""
    if fmt == PYTHON:
        return {
            f"{version}/model.onnx": onnx_path,
            f"{version}/model.py": MODEL_PY.encode(),
            "config.pbtxt": python_config(name, inputs, outputs, options).encode(),
        }
    if fmt == ONNX:
        return {
            f"{version}/model.onnx": onnx_path,
            "config.pbtxt": onnxruntime_config(name, inputs, outputs, options).encode(),
        }
    raise ValueError(f"unknown Triton entry format {fmt!r}; known: {PYTHON}, {ONNX}")


def write_entry(folder: Path, files: dict[str, Path | bytes]) -> Path:
    """Write ``files`` (from ``entry_files``) into the entry ``folder``; returns the folder."""
    for relative, content in files.items():
        target = folder / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, Path):
            shutil.copyfile(content, target)
        else:
            target.write_bytes(content)
    return folder


def write_python_backend_entry(
    repository: Path,
    model_name: str,
    onnx_path: Path,
    input_name: str,
    input_dims: Sequence[int],
    output_names: Sequence[str],
    output_dims: Sequence[Sequence[int]],
    max_batch_size: int = 16,
    version: int = VERSION,
    max_queue_delay_us: int = 500,
    intra_op_num_threads: int = 0,
) -> Path:
    """Write version ``version`` of the python-backend entry ``<repository>/<model_name>`` (overwriting
    it and the entry's config.pbtxt) and return the entry's folder. Other versions there are kept.

    ``input_dims`` is (C, H, W) and each of ``output_dims`` an output's shape, all without the
    batch dimension, which Triton adds because ``max_batch_size`` > 0; -1 marks a free dimension.
    """
    if len(output_names) != len(output_dims):
        raise ValueError("output_names and output_dims must have the same length")
    if not output_names:
        raise ValueError("a model needs at least one output")
    options = EntryOptions(
        max_batch_size=max_batch_size, max_queue_delay_us=max_queue_delay_us, intra_op_num_threads=intra_op_num_threads
    )
    inputs = [TensorSpec(input_name, input_dims)]
    outputs = [TensorSpec(n, d) for n, d in zip(output_names, output_dims, strict=True)]
    files = entry_files(PYTHON, model_name, onnx_path, inputs, outputs, options, version)
    return write_entry(repository / model_name, files)
