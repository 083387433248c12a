"""The detector service: models, micro-batching, DetectorService.

Models come from ``DETECTOR_MODEL_PATHS`` (served as they are) and, for ``LOOP_PROJECT``, from
the hub's deployment target.
"""

from __future__ import annotations

import asyncio
import shutil
import uuid
import zipfile
from pathlib import Path

from visionloop.detector.backends.base import BackendError
from visionloop.detector.config import DetectorSettings
from visionloop.detector.models import ModelSet, open_onnx_model
from visionloop.detector.service import DetectorServicer
from visionloop.detector.v1 import detector_service_pb2, detector_service_pb2_grpc
from visionloop.runtime.archives import UnsafeArchive, safe_extract
from visionloop.runtime.server import GrpcServer, Mount, ServiceSpec

SETTINGS = DetectorSettings


def node_id(data_dir: Path) -> str:
    """A stable id for this detector, kept in its data folder."""
    path = data_dir / "node_id"
    if path.is_file():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    value = f"detector-{uuid.uuid4()}"
    path.write_text(value)
    return value


def unpack(name: str, source: Path, data_dir: Path) -> Path:
    """A model folder for ``source``: the folder itself, or a zip extracted under the data folder."""
    if source.is_dir():
        return source
    target = data_dir / "models" / name / "static"
    shutil.rmtree(target, ignore_errors=True)
    try:
        safe_extract(source, target)
    except (zipfile.BadZipFile, UnsafeArchive) as error:
        raise BackendError(f"model {name}: {source} is not a usable model zip: {error}") from None
    return target


def create(settings: DetectorSettings) -> ServiceSpec:
    data_dir = settings.data_dir
    models = ModelSet(settings.default_model or settings.loop_project)
    servicer = DetectorServicer(settings, models, node_id(data_dir))
    mount = Mount.generated(servicer, detector_service_pb2_grpc, detector_service_pb2, "DetectorService")
    wait = settings.max_batch_wait_ms / 1000

    async def load_static_models(server: GrpcServer) -> None:
        for name, source in settings.model_path_pairs().items():
            folder = await asyncio.to_thread(unpack, name, source, data_dir)
            await models.put(await open_onnx_model(name, folder, settings.max_batch_size, wait))
        if not settings.default_model and settings.model_path_pairs() and settings.loop_project not in models.names():
            models.default = next(iter(settings.model_path_pairs()))

    async def close(server: GrpcServer) -> None:
        await models.close()

    return ServiceSpec(
        name="detector", mounts=[mount], on_start=[load_static_models], on_stop=[close], context=servicer
    )
