"""The models a detector serves side by side, each with its backend and micro-batcher.

A model lives in a folder holding ``model.json`` and its weights (``model.onnx``). Swapping a
model is atomic: requests that already hold the old model finish on it, new ones get the new
one, and the old backend is closed once its last request returned.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from google.protobuf import timestamp_pb2
from prometheus_client import Gauge

from visionloop.common.v1 import model_pb2
from visionloop.detector.v1 import detector_service_pb2 as pb
from visionloop.lib.inference import read_model_folder
from visionloop.runtime.errors import FailedPrecondition, NotFound, Unavailable
from visionloop.runtime.logging import get_logger
from visionloop.server.detector.admission import DEFAULT_POLICY, Admission, AdmissionPolicy
from visionloop.server.detector.backends.base import Backend, stack
from visionloop.server.detector.backends.onnxruntime import OnnxRuntimeBackend
from visionloop.server.detector.batching import MicroBatcher, Run

log = get_logger(__name__)

MODEL_INFO = Gauge("visionloop_detector_model_info", "Models served (1 per model and version).", ["model", "version"])
LOAD_FAILED = Gauge(
    "visionloop_detector_model_load_failed",
    "1 while the model's last load failed (the reason is in the node status and the log); 0 once one loaded.",
    ["model"],
)


@dataclass
class ServedModel:
    name: str
    info: model_pb2.ModelInfo
    backend: Backend
    batcher: MicroBatcher
    admission: Admission
    load_time: timestamp_pb2.Timestamp = field(default_factory=timestamp_pb2.Timestamp)
    in_flight: int = 0
    retired: bool = False
    _idle: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def version(self) -> str:
        return self.info.version

    async def close(self) -> None:
        await self.batcher.close()
        await self.backend.close()


async def open_onnx_model(
    name: str,
    folder: Path,
    max_batch: int = 16,
    max_wait: float = 0.002,
    admission: AdmissionPolicy = DEFAULT_POLICY,
) -> ServedModel:
    """Load a model folder on ONNX Runtime."""
    info, weights = await asyncio.to_thread(read_model_folder, folder)
    if not info.version:  # a model brought from elsewhere: detections still name what produced them
        info.version = "local"
    backend = await OnnxRuntimeBackend.load(
        weights, info.input.tensor_name or "images", list(info.output.tensor_names), max_batch, info.input.batch_size
    )
    return served(name, info, backend, max_wait, admission)


def _runner(backend: Backend) -> Run:
    """The batcher's call: the backend's own ``infer_frames`` when it stacks frames itself (off the
    event loop, into a reused buffer or a shared-memory region), else ``infer`` on the stacked batch."""
    infer_frames = getattr(backend, "infer_frames", None)
    if infer_frames is not None:
        return infer_frames

    async def run(frames: list[np.ndarray]) -> list[np.ndarray]:
        return await backend.infer(stack(frames))

    return run


def served(
    name: str,
    info: model_pb2.ModelInfo,
    backend: Backend,
    max_wait: float = 0.002,
    admission: AdmissionPolicy = DEFAULT_POLICY,
) -> ServedModel:
    batcher = MicroBatcher(name, _runner(backend), backend.max_batch_size, max_wait, backend.max_in_flight)
    model = ServedModel(name, info, backend, batcher, admission.admission(name, batcher.max_batch))
    model.load_time.GetCurrentTime()
    return model


class ModelSet:
    """Loaded models by name, and which one answers requests that name none."""

    def __init__(self, default: str) -> None:
        self.default = default
        self._models: dict[str, ServedModel] = {}
        self.failures: dict[str, str] = {}  # model name -> why its last load failed

    def failed(self, name: str, reason: str) -> None:
        """Note that loading ``name`` failed; what it served before (if anything) keeps serving."""
        self.failures[name] = reason
        LOAD_FAILED.labels(name).set(1)
        log.error("model did not load", model=name, reason=reason, still_serving=name in self._models)

    def names(self) -> list[str]:
        return sorted(self._models)

    def get(self, name: str = "") -> ServedModel:
        wanted = name or self.default
        model = self._models.get(wanted)
        if model is not None:
            return model
        if wanted in self.failures:
            raise FailedPrecondition(f"model {wanted!r} did not load: {self.failures[wanted]}")
        if not self._models:
            raise Unavailable(
                "no model is loaded yet: the detector is waiting for its first model from the hub "
                "(or DETECTOR_MODEL_PATHS); retry with backoff"
            )
        if not name:
            raise Unavailable(
                f"the default model {self.default!r} is not loaded yet; loaded: {', '.join(self.names())}"
            )
        raise NotFound(f"model {name!r} is not loaded; loaded models: {', '.join(self.names())}")

    @asynccontextmanager
    async def use(self, name: str = "") -> AsyncIterator[ServedModel]:
        """Hold a model for one request; a swap waits for held models before closing them."""
        model = self.get(name)
        model.in_flight += 1
        try:
            yield model
        finally:
            model.in_flight -= 1
            if model.retired and model.in_flight == 0:
                model._idle.set()

    async def put(self, model: ServedModel) -> None:
        """Serve ``model`` under its name; the model it replaces is closed after its last request."""
        old = self._models.get(model.name)
        self._models[model.name] = model  # the atomic moment of the swap
        self.failures.pop(model.name, None)
        LOAD_FAILED.labels(model.name).set(0)
        MODEL_INFO.labels(model.name, model.version).set(1)
        log.info("model serving", model=model.name, version=model.version, backend=model.backend.kind)
        if old is not None and old is not model:
            if old.version != model.version:
                MODEL_INFO.remove(old.name, old.version)
            asyncio.get_running_loop().create_task(self._retire(old))

    async def _retire(self, model: ServedModel) -> None:
        model.retired = True
        if model.in_flight:
            await model._idle.wait()
        await model.close()
        log.info("model retired", model=model.name, version=model.version)

    def loaded(self) -> list[pb.LoadedModel]:
        return [
            pb.LoadedModel(
                name=m.name,
                info=m.info,
                backend=m.backend.kind,
                is_default=m.name == self.default,
                load_time=m.load_time,
            )
            for m in (self._models[n] for n in self.names())
        ]

    async def close(self) -> None:
        for model in list(self._models.values()):
            await model.close()
        self._models.clear()
