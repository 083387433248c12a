"""The detector service: models, micro-batching, DetectorService.

Models come from ``DETECTOR_MODEL_PATHS`` (served as they are) and, for ``LOOP_PROJECT``, from
the hub's deployment target.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from pathlib import Path

from visionloop.detector.v1 import detector_service_pb2, detector_service_pb2_grpc
from visionloop.lib.inference import unpack_model
from visionloop.runtime.identity import node_id
from visionloop.runtime.logging import get_logger
from visionloop.runtime.presence import Presence
from visionloop.runtime.server import GrpcServer, Mount, ServiceSpec
from visionloop.server.detector.admission import AdmissionPolicy
from visionloop.server.detector.backends.base import BackendError
from visionloop.server.detector.config import Backend, DetectorSettings
from visionloop.server.detector.lifecycle import ModelUpdater
from visionloop.server.detector.models import ModelSet, ServedModel, open_onnx_model
from visionloop.server.detector.outbox import HubSender, Outbox
from visionloop.server.detector.service import DetectorServicer
from visionloop.server.detector.upload_filter import FilterSettings, UploadFilter
from visionloop.server.detector.uploads import ActiveLearningUploads

SETTINGS = DetectorSettings


def unpack(name: str, source: Path, data_dir: Path) -> Path:
    """A model folder for ``source``: the folder itself, or a zip extracted under the data folder."""
    return unpack_model(name, source, data_dir / "models" / name / "static")


log = get_logger(__name__)

Opener = Callable[[str, Path], Awaitable[ServedModel]]


def opener(settings: DetectorSettings, owner: str = "") -> Opener:
    """What loads a model folder on the configured backend: ``await opener(settings)(name, folder)``.
    ``owner`` (the node id) names the Triton shared-memory regions, so a restart can find leftovers."""
    wait = settings.max_batch_wait_ms / 1000
    admission = AdmissionPolicy(
        settings.queue_budget_ms / 1000,
        settings.max_queued_batches,
        settings.max_batch_size,
        target=None if settings.queue_target_ms is None else settings.queue_target_ms / 1000,
        interval=settings.queue_interval_ms / 1000,
    )
    if settings.backend is Backend.TRITON:
        # Imported here: the Triton client costs ~0.4 s of start-up that ONNX Runtime detectors skip.
        from visionloop.server.detector.triton_models import open_triton_model

        assert settings.triton_model_repository is not None  # DetectorSettings._consistent
        return functools.partial(
            open_triton_model,
            triton_url=settings.triton_url,
            repository=settings.triton_model_repository,
            max_batch=settings.max_batch_size,
            max_wait=wait,
            shared_memory=settings.triton_shared_memory,
            shared_memory_owner=owner,
            lease_seconds=settings.triton_lease_seconds,
            admission=admission,
        )
    return functools.partial(open_onnx_model, max_batch=settings.max_batch_size, max_wait=wait, admission=admission)


async def _sweep_shared_memory(url: str, owner: str) -> None:
    """Free the Triton input regions a killed run of this detector left behind (best effort)."""
    from tritonclient.utils import InferenceServerException

    from visionloop.server.detector.backends.triton_shm import sweep

    try:
        await sweep(url, owner)
    except (InferenceServerException, OSError) as error:
        log.warning("could not sweep old Triton shared-memory regions", url=url, reason=str(error))


def create(settings: DetectorSettings) -> ServiceSpec:
    data_dir = settings.data_dir
    static = settings.model_path_pairs()
    follow = settings.follows_loop() and settings.loop_project not in static
    default = settings.default_model or (settings.loop_project if follow or not static else next(iter(static)))
    models = ModelSet(default)
    servicer = DetectorServicer(settings, models, node_id(data_dir, "detector"))
    mount = Mount.generated(servicer, detector_service_pb2_grpc, detector_service_pb2, "DetectorService")
    open_model = opener(settings, servicer.node_id)  # static and hub models alike, on the configured backend

    # The project's model follows the hub unless a static model already takes its name.
    updater = None
    if follow:
        updater = ModelUpdater(
            peer=settings,
            models=models,
            name=settings.loop_project,
            folder=data_dir / "models" / settings.loop_project,
            open_model=open_model,
        )
        servicer.updater = updater

    # Frames for the hub (active learning, Upload) wait in the durable outbox.
    sender = HubSender.connect(settings)
    outbox = Outbox(data_dir / "outbox", sender)
    servicer.outbox = outbox
    upload_filter = UploadFilter(FilterSettings.from_settings(settings))
    servicer.uploads = ActiveLearningUploads(upload_filter, outbox, f"detector:{servicer.node_id}")

    presence = Presence(settings, servicer.node_status)  # operators see each detector and its model
    servicer.presence = presence

    async def start(server: GrpcServer) -> None:
        presence.start()
        if settings.backend is Backend.TRITON and settings.triton_shared_memory != "off":
            await _sweep_shared_memory(settings.triton_url, servicer.node_id)
        for name, source in static.items():
            # A model that does not load is refused with its reason (node status, metrics, the answer
            # to requests for it); the detector serves the others.
            try:
                folder = await asyncio.to_thread(unpack, name, source, data_dir)
                await models.put(await open_model(name, folder))
            except BackendError as error:
                models.failed(name, str(error))
        outbox.start()
        if updater is not None:
            await updater.start()

    async def close(server: GrpcServer) -> None:
        await presence.stop()
        if updater is not None:
            await updater.stop()
        await outbox.stop()
        await sender.close()
        await models.close()

    return ServiceSpec(
        name="detector",
        mounts=[mount],
        on_start=[start],
        on_stop=[close],
        context=servicer,
        project=(settings.loop_organization, settings.loop_project),  # robots' frames go to this project
    )
