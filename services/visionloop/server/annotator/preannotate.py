"""Pre-annotation: the project's deployed model (ONNX format) on images awaiting annotation.

Its detections are stored on the hub as the image's suggestions (detections of that model
version, apart from human annotations), and the image's queue priority is recomputed from them.
The model runs in-process (``visionloop.lib.inference``) with the detector's pre- and
post-processing; a loaded version is kept until the deployment moves on.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

from visionloop.common.v1 import detection_pb2
from visionloop.lib import images
from visionloop.lib.inference import LocalModel, unpack_model
from visionloop.lib.preprocess import Frame
from visionloop.loop.v1 import (
    deployment_service_pb2,
    deployment_service_pb2_grpc,
    model_service_pb2,
    model_service_pb2_grpc,
    project_service_pb2,
)
from visionloop.runtime.errors import FailedPrecondition
from visionloop.runtime.model_transfer import download_model
from visionloop.server.annotator.hub_client import AnnotatorHub, call

FORMAT = "onnx"


class DeployedModel:
    """The deployed model of each project, loaded on first use."""

    def __init__(self, hub: AnnotatorHub, folder: Path, limits: images.Limits = images.DEFAULT_LIMITS) -> None:
        self.hub = hub
        self.folder = folder
        self.limits = limits
        self._deployments = deployment_service_pb2_grpc.DeploymentServiceStub(hub.channel)
        self._models = model_service_pb2_grpc.ModelServiceStub(hub.channel)
        self._loaded: dict[tuple[str, str], LocalModel] = {}
        self._lock = asyncio.Lock()

    async def get(self, ref: project_service_pb2.ProjectRef) -> LocalModel:
        request = deployment_service_pb2.GetDeploymentRequest(ref=ref)
        deployment = (await call(self._deployments.GetDeployment(request, timeout=60))).deployment
        version = deployment.resolved_version
        name = f"{ref.organization}/{ref.project}"
        if not version:
            raise FailedPrecondition(f"{name} has no deployed model yet; train or upload one first")
        if FORMAT not in deployment.resolved_formats:
            raise FailedPrecondition(f"model {version} of {name} has no {FORMAT} format yet; the converter adds it")
        key = (name, version)
        async with self._lock:
            model = self._loaded.get(key)
            if model is None:
                model = await self._load(ref, version)
                for old_key in [k for k in self._loaded if k[0] == name]:
                    del self._loaded[old_key]
                self._loaded[key] = model
            return model

    async def _load(self, ref: project_service_pb2.ProjectRef, version: str) -> LocalModel:
        place = self.folder / ref.organization / ref.project / version
        shutil.rmtree(place, ignore_errors=True)
        place.mkdir(parents=True)
        archive = place / "model.zip"
        key = model_service_pb2.ModelKey(ref=ref, version=version)
        await call(download_model(self._models, key, FORMAT, archive))
        folder = await asyncio.to_thread(unpack_model, version, archive, place / "model")
        return await asyncio.to_thread(LocalModel.open, folder)

    async def detect(
        self, model: LocalModel, data: bytes, score_threshold: float | None = None
    ) -> detection_pb2.Detections:
        """The model's detections on the image ``data``, at its default score threshold or ``score_threshold``."""
        frame = Frame(await asyncio.to_thread(images.decode, data, self.limits), "bgr")
        return await asyncio.to_thread(model.detect, frame, score_threshold)

    async def close(self) -> None:
        self._loaded.clear()
