"""In-process inference: a model folder (``model.json`` and its ONNX graph) run in this process on
ONNX Runtime, with the shared pre- and post-processing.

The annotator's pre-annotation runs models this way (``LocalModel``); the detector serves them
through its own backends and micro-batcher, and opens folders and ONNX Runtime sessions with the
functions here, so a model loads the same way wherever it runs.
"""

from __future__ import annotations

import os
import shutil
import threading
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from visionloop.common.v1 import detection_pb2, model_pb2
from visionloop.detector.v1 import detector_service_pb2
from visionloop.lib import postprocess
from visionloop.lib.archives import UnsafeArchive, safe_extract
from visionloop.lib.model_format import onnx_graph
from visionloop.lib.model_format.model_json import MODEL_JSON, model_info_from_json, parse_model_json
from visionloop.lib.preprocess import Frame, prepare
from visionloop.runtime.errors import InvalidArgument


class ModelError(Exception):
    """A model that cannot be loaded or run; the message says why."""


def unpack_model(name: str, source: Path, target: Path) -> Path:
    """A model folder for ``source``: the folder itself, or the zip extracted into ``target``
    (emptied first; unsafe entries refused)."""
    if source.is_dir():
        return source
    shutil.rmtree(target, ignore_errors=True)
    try:
        safe_extract(source, target)
    except (zipfile.BadZipFile, UnsafeArchive) as error:
        raise ModelError(f"model {name}: {source} is not a usable model zip: {error}") from None
    return target


def read_model_folder(folder: Path) -> tuple[model_pb2.ModelInfo, Path]:
    """The model.json and the ONNX file of a model folder, checked against each other (tensor
    names, ranks, element types, class count, batch and image size: ``onnx_graph.problems``);
    ModelError saying what is wrong. ``info.input.batch_size`` is set to what the graph takes."""
    manifest = folder / MODEL_JSON
    if not manifest.is_file():
        raise ModelError(f"{folder} has no {MODEL_JSON}")
    try:
        info = model_info_from_json(parse_model_json(manifest.read_bytes()))
    except InvalidArgument as error:
        raise ModelError(str(error)) from None
    weights = folder / "model.onnx"
    if not weights.is_file():
        candidates = sorted(folder.glob("*.onnx"))
        if not candidates:
            raise ModelError(f"{folder} has no .onnx file")
        weights = candidates[0]
    try:
        signature = onnx_graph.read_signature(weights)
    except InvalidArgument as error:
        raise ModelError(f"{weights.name}: {error}") from None
    problems = onnx_graph.problems(info, signature)
    if problems:
        raise ModelError(f"{MODEL_JSON} does not fit the ONNX graph: " + "; ".join(problems))
    info.input.batch_size = onnx_graph.batch_size(info.input, signature)
    return info, weights


class OnnxSession:
    """One ONNX Runtime session on the CPU. A graph with a fixed batch dimension (Ultralytics'
    default export takes exactly one image) gets its batches padded up to that size; a float16
    input gets its tensor cast. ``run`` blocks; sessions may be run from several threads."""

    def __init__(self, session: object, input_name: str, output_names: Sequence[str], fixed_batch: int = 0) -> None:
        self._session = session
        self.input_name = input_name
        self.output_names = list(output_names)
        self.fixed_batch = fixed_batch  # 0: any batch size
        kind = next(i.type for i in session.get_inputs() if i.name == input_name)  # type: ignore[attr-defined]
        self.input_type: type[np.floating] = np.float16 if kind == "tensor(float16)" else np.float32

    @classmethod
    def load(cls, model_path: Path, input_name: str, output_names: Sequence[str], fixed_batch: int = 0) -> OnnxSession:
        """The session of ``model_path`` (blocking); ModelError when the file is not a usable model
        or lacks the tensors named."""
        import onnxruntime as ort  # imported here: a second of start-up that light commands skip

        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, min(4, os.cpu_count() or 1))
        # Spinning workers would steal the cores that decode and post-process the next frames.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        except Exception as error:  # ORT raises its own exception types for broken files
            raise ModelError(f"ONNX Runtime cannot load {model_path.name}: {error}") from None
        inputs = {i.name for i in session.get_inputs()}
        outputs = {o.name for o in session.get_outputs()}
        if input_name not in inputs:
            raise ModelError(f"model has no input {input_name!r} (inputs: {', '.join(sorted(inputs))})")
        missing = [name for name in output_names if name not in outputs]
        if missing:
            raise ModelError(f"model has no output {missing[0]!r} (outputs: {', '.join(sorted(outputs))})")
        return cls(session, input_name, output_names, fixed_batch)

    def run(self, batch: np.ndarray, frames: int | None = None) -> list[np.ndarray]:
        """Run ``batch`` (padded up to a fixed batch size here when short); the outputs of its first
        ``frames`` images (all of them by default)."""
        count = len(batch) if frames is None else frames
        if self.fixed_batch and len(batch) != self.fixed_batch:
            if len(batch) > self.fixed_batch:
                raise ModelError(f"a batch of {len(batch)} images; the model takes {self.fixed_batch} at a time")
            padded = np.zeros((self.fixed_batch, *batch.shape[1:]), np.float32)
            padded[: len(batch)] = batch
            batch = padded
        feed = {self.input_name: np.ascontiguousarray(batch, dtype=self.input_type)}
        outputs = self._session.run(self.output_names, feed)  # type: ignore[attr-defined]
        return [output[:count] for output in outputs] if count != len(batch) else outputs


class LocalModel:
    """A model folder on ONNX Runtime in this process: frames in, detections out, as the detector
    answers them with default options. Blocking; one run at a time (ONNX Runtime already spreads a
    run over the cores)."""

    def __init__(self, info: model_pb2.ModelInfo, session: OnnxSession) -> None:
        self.info = info
        self.session = session
        self._lock = threading.Lock()

    @property
    def version(self) -> str:
        return self.info.version

    @classmethod
    def open(cls, folder: Path) -> LocalModel:
        info, weights = read_model_folder(folder)
        if not info.version:  # a model brought from elsewhere: detections still name what produced them
            info.version = "local"
        names = list(info.output.tensor_names)
        return cls(info, OnnxSession.load(weights, info.input.tensor_name or "images", names, info.input.batch_size))

    def detect(self, frame: Frame, score_threshold: float | None = None) -> detection_pb2.Detections:
        """Detections on ``frame`` at the model's default score threshold, or ``score_threshold``."""
        tensor, transform = prepare(frame, self.info.input, self.info.input.rescale_type)
        with self._lock:
            outputs = [output[0] for output in self.session.run(tensor[None])]
        options = detector_service_pb2.DetectOptions(score_threshold=score_threshold)
        settings = postprocess.Settings.resolve(options, self.info.detection_defaults)
        return postprocess.to_detections(self.info, outputs, transform, (frame.width, frame.height), settings)
