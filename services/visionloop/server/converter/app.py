"""The converter service: ConverterService plus the worker that follows the hub's events.

Models lacking a target format (``CONVERTER_TARGET_FORMATS``) are converted as the hub announces
them; ``Convert`` runs one on demand. Triton entries go to the model repository in the object
store (``TRITON_MODEL_REPOSITORY`` folder, or ``CONVERTER_TRITON_PREFIX`` in the S3 bucket).
"""

from __future__ import annotations

import asyncio

from visionloop.converter.v1 import converter_service_pb2, converter_service_pb2_grpc
from visionloop.runtime.identity import node_id
from visionloop.runtime.logging import get_logger
from visionloop.runtime.server import GrpcServer, Mount, ServiceSpec
from visionloop.server.converter.config import ConverterSettings
from visionloop.server.converter.hub_client import ConverterHub
from visionloop.server.converter.repository import TritonRepository
from visionloop.server.converter.service import ConverterServicer
from visionloop.server.converter.worker import Converter

SETTINGS = ConverterSettings
log = get_logger(__name__)


def create(settings: ConverterSettings) -> ServiceSpec:
    servicer = ConverterServicer()
    mount = Mount.generated(servicer, converter_service_pb2_grpc, converter_service_pb2, "ConverterService")
    data_dir = settings.data_dir

    async def start(server: GrpcServer) -> None:
        repository = await asyncio.to_thread(TritonRepository.from_settings, settings)
        hub = ConverterHub(settings, await asyncio.to_thread(node_id, data_dir, "converter"), settings.image_limits)
        converter = Converter(settings, hub, repository, data_dir / "work")
        await converter.start()
        servicer.converter = converter
        log.info("converter following the hub", targets=converter.targets, triton_repository=repository.location)

    async def stop(server: GrpcServer) -> None:
        if servicer.converter is not None:
            await servicer.converter.stop()
            await servicer.converter.hub.close()

    return ServiceSpec(
        name="converter",
        mounts=[mount],
        on_start=[start],
        on_stop=[stop],
        context=servicer,
        project=None if settings.all_projects else (settings.loop_organization, settings.loop_project),
    )
