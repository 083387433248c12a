"""The annotator service: interactive sessions, pre-annotation and queue ranking over the hub.

Backends: ``classical`` (OpenCV, no weights) always; ``sam`` when SAM_ENCODER_PATH and
SAM_DECODER_PATH point at an exported SAM encoder/decoder pair.
"""

from __future__ import annotations

import asyncio

from visionloop.annotator.v1 import annotator_service_pb2, annotator_service_pb2_grpc
from visionloop.runtime.logging import get_logger
from visionloop.runtime.server import GrpcServer, Mount, ServiceSpec
from visionloop.server.annotator.config import AnnotatorSettings
from visionloop.server.annotator.hub_client import AnnotatorHub
from visionloop.server.annotator.labelstudio.bridge import Bridge
from visionloop.server.annotator.labelstudio.server import LabelStudioServer
from visionloop.server.annotator.labelstudio.store import Store
from visionloop.server.annotator.preannotate import DeployedModel
from visionloop.server.annotator.sam import SamBackend
from visionloop.server.annotator.service import AnnotatorServicer, Backend, classical
from visionloop.server.annotator.watcher import PriorityWatcher

SETTINGS = AnnotatorSettings
log = get_logger(__name__)


def backends(settings: AnnotatorSettings) -> dict[str, Backend]:
    found: dict[str, Backend] = {"classical": classical}
    if settings.sam_encoder_path is not None and settings.sam_decoder_path is not None:
        found["sam"] = SamBackend(settings.sam_encoder_path, settings.sam_decoder_path)
    return found


def create(settings: AnnotatorSettings) -> ServiceSpec:
    servicer = AnnotatorServicer(settings.project_ref, backends(settings), settings.image_limits)
    mount = Mount.generated(servicer, annotator_service_pb2_grpc, annotator_service_pb2, "AnnotatorService")

    async def start(server: GrpcServer) -> None:
        servicer.hub = AnnotatorHub(settings)
        servicer.deployed = DeployedModel(servicer.hub, settings.data_dir / "models", settings.image_limits)
        if settings.rank_new_images:
            ref = settings.project_ref
            await asyncio.to_thread(settings.data_dir.mkdir, parents=True, exist_ok=True)
            watcher = PriorityWatcher(
                servicer.hub, ref, settings.data_dir / "annotator-events.cursor", lambda: servicer.criteria_for(ref)
            )
            watcher.start()
            servicer.watcher = watcher
        if settings.label_studio_port >= 0:
            store = await asyncio.to_thread(Store, settings.data_dir / "label-studio.sqlite")
            bridge = Bridge(
                servicer.hub, settings.project_ref, store, servicer.deployed, servicer.backends, settings.image_limits
            )
            server_ = LabelStudioServer(bridge, settings.label_studio_token, settings.host, settings.label_studio_port)
            await server_.start()
            servicer.label_studio = server_
            log.info("label studio bridge listening", port=server_.port)
        log.info("annotator ready", backends=sorted(servicer.backends), default=servicer.default_backend)

    async def stop(server: GrpcServer) -> None:
        if servicer.watcher is not None:
            await servicer.watcher.stop()
        if servicer.label_studio is not None:
            await servicer.label_studio.stop()
        if servicer.deployed is not None:
            await servicer.deployed.close()
        if servicer.hub is not None:
            await servicer.hub.close()

    return ServiceSpec(name="annotator", mounts=[mount], on_start=[start], on_stop=[stop], context=servicer)
