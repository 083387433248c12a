"""Pre-annotation: the project's deployed model (ONNX format) on images awaiting annotation.

Its detections are stored on the hub as the image's suggestions (detections of that model
version, apart from human annotations), and the image's queue priority is recomputed from them.
The model runs in-process with the detector's own pre- and post-processing; a loaded version is
kept until the deployment moves on.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

from visionloop.annotator.hub import AnnotatorHub, call
from visionloop.common.v1 import detection_pb2
from visionloop.detector import postprocess, preprocess
from visionloop.detector.app import unpack
from visionloop.detector.models import ServedModel, open_onnx_model
from visionloop.detector.v1 import detector_service_pb2
from visionloop.lib import images
from visionloop.loop.v1 import (
    deployment_service_pb2,
    deployment_service_pb2_grpc,
    model_service_pb2,
    model_service_pb2_grpc,
    project_service_pb2,
)
from visionloop.runtime.errors import FailedPrecondition
from visionloop.runtime.model_transfer import download_model

FORMAT = "onnx"


class DeployedModel:
    """The deployed model of each project, loaded on first use."""

    def __init__(self, hub: AnnotatorHub, folder: Path, limits: images.Limits = images.DEFAULT_LIMITS) -> None:
        self.hub = hub
        self.folder = folder
        self.limits = limits
        self._deployments = deployment_service_pb2_grpc.DeploymentServiceStub(hub.channel)
        self._models = model_service_pb2_grpc.ModelServiceStub(hub.channel)
        self._loaded: dict[tuple[str, str], ServedModel] = {}
        self._lock = asyncio.Lock()

    async def get(self, ref: project_service_pb2.ProjectRef) -> ServedModel:
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
                    await self._loaded.pop(old_key).close()
                self._loaded[key] = model
            return model

    async def _load(self, ref: project_service_pb2.ProjectRef, version: str) -> ServedModel:
        place = self.folder / ref.organization / ref.project / version
        shutil.rmtree(place, ignore_errors=True)
        place.mkdir(parents=True)
        archive = place / "model.zip"
        key = model_service_pb2.ModelKey(ref=ref, version=version)
        await call(download_model(self._models, key, FORMAT, archive))
        folder = await asyncio.to_thread(unpack, version, archive, place)
        return await open_onnx_model(f"{ref.organization}-{ref.project}", folder)

    async def detect(
        self, model: ServedModel, data: bytes, score_threshold: float | None = None
    ) -> detection_pb2.Detections:
        """The model's detections on the image ``data``, at its default score threshold or ``score_threshold``."""
        frame = preprocess.Frame(await asyncio.to_thread(images.decode, data, self.limits), "bgr")
        rescale = model.info.input.rescale_type
        tensor, transform = await asyncio.to_thread(preprocess.prepare, frame, model.info.input, rescale)
        options = detector_service_pb2.DetectOptions(score_threshold=score_threshold)
        settings = postprocess.Settings.resolve(options, model.info.detection_defaults)
        size = (frame.width, frame.height)
        done = await model.batcher.submit(
            tensor, lambda outputs: postprocess.to_detections(model.info, outputs, transform, size, settings)
        )
        return done.value

    async def close(self) -> None:
        for model in self._loaded.values():
            await model.close()
        self._loaded.clear()
