"""DetectorService: what robots call.

Decoding and pre-processing run in worker threads, inference in the backend's own thread (or
in Triton), post-processing in a worker thread again (one per batch), so the event loop only
moves messages.
Every detection names the model version that produced it.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import grpc
import numpy as np
from google.protobuf import duration_pb2
from prometheus_client import Counter, Histogram

from visionloop.common.v1 import detection_pb2, image_pb2, model_pb2, node_pb2
from visionloop.detector.v1 import detector_service_pb2 as pb
from visionloop.detector.v1 import detector_service_pb2_grpc
from visionloop.lib import postprocess, preprocess
from visionloop.loop.v1 import image_service_pb2
from visionloop.runtime import __version__
from visionloop.runtime.errors import FailedPrecondition, InvalidArgument, ServiceError, Unavailable
from visionloop.runtime.logging import get_logger
from visionloop.server.detector.config import DetectorSettings
from visionloop.server.detector.models import ModelSet, ServedModel
from visionloop.server.detector.uploads import stored_bytes

log = get_logger(__name__)

STAGE_SECONDS = Histogram(
    "visionloop_detector_stage_seconds",
    "Time per detection stage: decode, preprocess, queue, infer, postprocess.",
    ["stage"],
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)
FRAMES = Counter("visionloop_detector_frames", "Frames detected, per camera.", ["camera"])
MAX_CAMERA_LABELS = 64  # camera ids become labels up to this many; the rest count as "other"


class UploadHook(Protocol):
    """Decides after a detection whether the frame goes to the hub, and queues it."""

    async def after_detection(
        self, image: image_pb2.Image, frame: preprocess.Frame, options: pb.DetectOptions, response: pb.DetectResponse
    ) -> None: ...


@dataclass
class Prepared:
    frame: preprocess.Frame
    tensor: np.ndarray
    transform: preprocess.Transform
    decode_seconds: float
    preprocess_seconds: float

    def detections(
        self, info: model_pb2.ModelInfo, outputs: list[np.ndarray], settings: postprocess.Settings
    ) -> detection_pb2.Detections:
        """The model's outputs for this frame as detections in the frame's own pixels."""
        size = (self.frame.width, self.frame.height)
        return postprocess.to_detections(info, outputs, self.transform, size, settings)


@dataclass
class Run:
    """One frame's detections and where its time went."""

    prepared: Prepared
    detections: detection_pb2.Detections
    queue_seconds: float
    infer_seconds: float
    postprocess_seconds: float


def _duration(seconds: float) -> duration_pb2.Duration:
    duration = duration_pb2.Duration()
    duration.FromNanoseconds(int(seconds * 1e9))
    return duration


class DetectorServicer(detector_service_pb2_grpc.DetectorServiceServicer):
    def __init__(self, settings: DetectorSettings, models: ModelSet, node_id: str = "") -> None:
        self.settings = settings
        self.models = models
        self.node_id = node_id
        self.mode = pb.OPERATION_MODE_DETECTING
        self.uploads: UploadHook | None = None
        self.outbox: Any = None  # the durable outbox, once wired (status, mode, put)
        self.updater: Any = None  # follows the hub's deployment (lifecycle.ModelUpdater)
        self.presence: Any = None  # the node registry entry (runtime.presence.Presence)
        self._cameras: set[str] = set()

    # --- detection ------------------------------------------------------------------------------

    def _prepare(self, image: image_pb2.Image, spec: model_pb2.ModelInput, rescale: int) -> Prepared:
        started = time.perf_counter()
        frame = preprocess.decode(image, self.settings.max_image_bytes, self.settings.max_image_pixels)
        decoded = time.perf_counter()
        tensor, transform = preprocess.prepare(frame, spec, rescale)
        return Prepared(frame, tensor, transform, decoded - started, time.perf_counter() - decoded)

    def _camera_label(self, camera_id: str) -> str:
        if camera_id in self._cameras:
            return camera_id
        if len(self._cameras) < MAX_CAMERA_LABELS:
            self._cameras.add(camera_id)
            return camera_id
        return "other"

    def _alone(
        self,
        model: ServedModel,
        run_blocking: Callable[[list[np.ndarray]], list[np.ndarray]],
        image: image_pb2.Image,
        rescale: int,
        settings: postprocess.Settings,
    ) -> Run:
        """A lone frame start to end on this (worker) thread: blocking, so never on the event loop."""
        prepared = self._prepare(image, model.info.input, rescale)
        started = time.perf_counter()
        outputs = [output[0] for output in run_blocking([prepared.tensor])]
        inferred = time.perf_counter()
        detections = prepared.detections(model.info, outputs, settings)
        return Run(prepared, detections, 0.0, inferred - started, time.perf_counter() - inferred)

    async def _batched(
        self, model: ServedModel, image: image_pb2.Image, rescale: int, settings: postprocess.Settings
    ) -> Run:
        """A frame among others: decoded in a worker thread, inferred in the micro-batcher's next batch."""
        model.batcher.note_arrival()
        try:
            prepared = await asyncio.to_thread(self._prepare, image, model.info.input, rescale)
        finally:
            model.batcher.note_departure()
        # NMS and a hundred boxes into protobuf take a millisecond: the batcher runs them in a worker
        # thread, as on the event loop they would hold up every other camera's frames.
        done = await model.batcher.submit(
            prepared.tensor, lambda outputs: prepared.detections(model.info, outputs, settings)
        )
        return Run(prepared, done.value, done.queue_seconds, done.infer_seconds, done.finish_seconds)

    def _check(self, options: pb.DetectOptions) -> None:
        if self.mode == pb.OPERATION_MODE_IDLE:
            raise Unavailable("the detector is idle (SetOperationMode); switch it to OPERATION_MODE_DETECTING")
        if options.autoupload not in pb.AutoUpload.values():
            raise InvalidArgument(
                "options.autoupload must be AUTO_UPLOAD_FILTERED, AUTO_UPLOAD_ALL or AUTO_UPLOAD_DISABLED"
            )

    async def _run(
        self, model: ServedModel, image: image_pb2.Image, options: pb.DetectOptions
    ) -> tuple[pb.DetectResponse, preprocess.Frame]:
        """One admitted frame through decode, pre-process, batched inference and post-processing."""
        settings = postprocess.Settings.resolve(options, model.info.detection_defaults)
        rescale = options.rescale_type or model.info.input.rescale_type
        run_blocking = getattr(model.backend, "run_blocking", None)
        if run_blocking is not None and await model.batcher.claim_idle():
            try:  # nobody to batch with: the whole frame in one thread, no hand-overs
                run = await asyncio.to_thread(self._alone, model, run_blocking, image, rescale, settings)
            finally:
                model.batcher.release()
        else:
            run = await self._batched(model, image, rescale, settings)
        prepared = run.prepared
        for stage, seconds in (
            ("decode", prepared.decode_seconds),
            ("preprocess", prepared.preprocess_seconds),
            ("queue", run.queue_seconds),
            ("infer", run.infer_seconds),
            ("postprocess", run.postprocess_seconds),
        ):
            STAGE_SECONDS.labels(stage).observe(seconds)
        FRAMES.labels(self._camera_label(options.camera_id or "default")).inc()
        frame = prepared.frame
        response = pb.DetectResponse(
            detections=run.detections,
            model=model.name,
            model_version=model.version,
            image_width=frame.width,
            image_height=frame.height,
            timing=pb.Timing(
                preprocess=_duration(prepared.decode_seconds + prepared.preprocess_seconds),
                queue=_duration(run.queue_seconds),
                inference=_duration(run.infer_seconds),
                postprocess=_duration(run.postprocess_seconds),
            ),
        )
        return response, frame

    async def detect(self, image: image_pb2.Image, options: pb.DetectOptions) -> pb.DetectResponse:
        """One frame, if its model admits it (else ResourceExhausted at once), then the upload filter."""
        self._check(options)
        async with self.models.use(options.model) as model:
            with model.admission.hold():
                response, frame = await self._run(model, image, options)
        if self.uploads is not None:  # the outbox's disk write is not the model's work: after the release
            await self.uploads.after_detection(image, frame, options, response)
        return response

    async def Detect(self, request: pb.DetectRequest, context: grpc.aio.ServicerContext) -> pb.DetectResponse:
        return await self.detect(request.image, request.options)

    async def DetectBatch(
        self, request: pb.DetectBatchRequest, context: grpc.aio.ServicerContext
    ) -> pb.DetectBatchResponse:
        if not request.images:
            raise InvalidArgument("images is empty; send at least one image")
        if len(request.images) > self.settings.max_batch_size * 4:
            raise InvalidArgument(
                f"at most {self.settings.max_batch_size * 4} images per DetectBatch, got {len(request.images)}"
            )
        options = request.options
        self._check(options)
        async with self.models.use(options.model) as model:
            # All or nothing: the model admits the whole request, or refuses it at once.
            with model.admission.hold(len(request.images)):
                done = await asyncio.gather(
                    *(self._run(model, image, options) for image in request.images), return_exceptions=True
                )
                # Every frame has finished before the hold is released; the first failure in order is the answer.
                for outcome in done:
                    if isinstance(outcome, BaseException):
                        raise outcome
        ran = [outcome for outcome in done if not isinstance(outcome, BaseException)]
        if self.uploads is not None:
            uploads = self.uploads
            await asyncio.gather(
                *(
                    uploads.after_detection(image, frame, options, response)
                    for image, (response, frame) in zip(request.images, ran, strict=True)
                )
            )
        return pb.DetectBatchResponse(results=[response for response, _ in ran])

    async def _stream_frame(
        self, request: pb.DetectStreamRequest, options: pb.DetectOptions
    ) -> pb.DetectStreamResponse:
        try:
            result = await self.detect(request.image, options)
        except ServiceError as error:
            return pb.DetectStreamResponse(
                frame_id=request.frame_id, error_code=error.code.value[0], error_message=error.message
            )
        except Exception:
            log.exception("frame failed", frame_id=request.frame_id)
            return pb.DetectStreamResponse(
                frame_id=request.frame_id, error_code=grpc.StatusCode.INTERNAL.value[0], error_message="internal error"
            )
        return pb.DetectStreamResponse(frame_id=request.frame_id, result=result)

    async def DetectStream(
        self, request_iterator: AsyncIterator[pb.DetectStreamRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.DetectStreamResponse]:
        # Up to stream_depth frames are in flight at once; answers leave in request order.
        pending: asyncio.Queue[asyncio.Task[pb.DetectStreamResponse] | None] = asyncio.Queue(
            maxsize=self.settings.stream_depth
        )

        async def read() -> None:
            options = pb.DetectOptions()
            try:
                async for request in request_iterator:
                    if request.HasField("options"):
                        options = request.options
                    task = asyncio.get_running_loop().create_task(self._stream_frame(request, options))
                    await pending.put(task)
            finally:
                await pending.put(None)

        reader = asyncio.get_running_loop().create_task(read())
        try:
            while (task := await pending.get()) is not None:
                yield await task
            await reader  # surfaces a failure of the request stream itself
        finally:
            reader.cancel()
            while not pending.empty():
                leftover = pending.get_nowait()
                if leftover is not None:
                    leftover.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader

    # --- information and control ----------------------------------------------------------------

    def node_status(self) -> node_pb2.NodeStatus:
        """What the hub's node registry shows for this detector: state, model version, problems."""
        loaded = {m.name: m for m in self.models.loaded()}
        default = loaded.get(self.models.default)
        errors = [
            node_pb2.NodeError(
                key="model_update", message=f"version {version}: {failure.reason}", count=failure.attempts
            )
            for version, failure in (self.updater.failures.items() if self.updater is not None else [])
        ]
        following = self.updater.name if self.updater is not None else None
        errors += [  # static models (DETECTOR_MODEL_PATHS) that did not load; the hub's are listed above
            node_pb2.NodeError(key="model_load", message=f"model {name}: {reason}", count=1)
            for name, reason in sorted(self.models.failures.items())
            if name != following
        ]
        if self.mode == pb.OPERATION_MODE_IDLE:
            state = node_pb2.NODE_STATE_IDLE
        elif not loaded and not errors:
            state = node_pb2.NODE_STATE_STARTING
        else:
            state = node_pb2.NODE_STATE_DEGRADED if errors else node_pb2.NODE_STATE_BUSY
        return node_pb2.NodeStatus(
            node_id=self.node_id,
            name=f"detector@{socket.gethostname()}",
            type=node_pb2.NODE_TYPE_DETECTOR,
            state=state,
            organization=self.settings.loop_organization,
            project=self.settings.loop_project,
            model_version=default.info.version if default is not None else "",
            errors=errors,
            capabilities=[self.settings.backend.value, *sorted(loaded)],
        )

    async def GetModelInfo(
        self, request: pb.GetModelInfoRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetModelInfoResponse:
        return pb.GetModelInfoResponse(info=self.models.get(request.model).info)

    async def ListLoadedModels(
        self, request: pb.ListLoadedModelsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListLoadedModelsResponse:
        return pb.ListLoadedModelsResponse(models=self.models.loaded(), default_model=self.models.default)

    def _outbox_status(self) -> pb.OutboxStatus:
        return self.outbox.status().to_proto() if self.outbox is not None else pb.OutboxStatus()

    async def GetAbout(self, request: pb.GetAboutRequest, context: grpc.aio.ServicerContext) -> pb.GetAboutResponse:
        return pb.GetAboutResponse(
            node_id=self.node_id,
            software_version=__version__,
            operation_mode=self.mode,
            version_control=self.updater.version_control if self.updater else pb.VERSION_CONTROL_PAUSE,
            pinned_version=self.updater.pinned_version if self.updater else "",
            organization=self.settings.loop_organization,
            project=self.settings.loop_project,
            models=self.models.loaded(),
            outbox=self._outbox_status(),
            formats=["onnx"],
        )

    async def SetOperationMode(
        self, request: pb.SetOperationModeRequest, context: grpc.aio.ServicerContext
    ) -> pb.SetOperationModeResponse:
        if request.mode not in (pb.OPERATION_MODE_DETECTING, pb.OPERATION_MODE_IDLE):
            raise InvalidArgument("mode must be OPERATION_MODE_DETECTING or OPERATION_MODE_IDLE")
        self.mode = request.mode
        log.info("operation mode", mode=pb.OperationMode.Name(request.mode))
        return pb.SetOperationModeResponse(mode=self.mode)

    async def SetOutboxMode(
        self, request: pb.SetOutboxModeRequest, context: grpc.aio.ServicerContext
    ) -> pb.SetOutboxModeResponse:
        if request.mode not in (pb.OUTBOX_MODE_CONTINUOUS_UPLOAD, pb.OUTBOX_MODE_STOPPED):
            raise InvalidArgument("mode must be OUTBOX_MODE_CONTINUOUS_UPLOAD or OUTBOX_MODE_STOPPED")
        if self.outbox is None:
            raise FailedPrecondition("this detector has no outbox configured")
        self.outbox.set_mode(request.mode)
        return pb.SetOutboxModeResponse(outbox=self._outbox_status())

    async def Upload(self, request: pb.UploadRequest, context: grpc.aio.ServicerContext) -> pb.UploadResponse:
        if self.outbox is None:
            raise FailedPrecondition("this detector has no outbox: it does not follow a hub (LOOP_HOST)")
        # Decoding proves the image is one before it waits in the outbox for the hub to refuse it.
        frame = await asyncio.to_thread(
            preprocess.decode, request.image, self.settings.max_image_bytes, self.settings.max_image_pixels
        )
        data = await asyncio.to_thread(stored_bytes, request.image, frame)
        metadata = image_pb2.ImageMetadata(
            tags=list(request.tags) or ["picked_by_system"],
            camera_id=request.camera_id,
            source=f"detector:{self.node_id}",
            create_time=request.create_time if request.HasField("create_time") else None,
        )
        upload = image_service_pb2.ImageUpload(
            data=data, metadata=metadata, annotations=request.annotations, detections=request.detections
        )
        item_id = await self.outbox.put(upload, high_priority=request.priority == pb.UPLOAD_PRIORITY_HIGH)
        return pb.UploadResponse(item_id=item_id, outbox_depth=self.outbox.depth)

    async def SetVersionControl(
        self, request: pb.SetVersionControlRequest, context: grpc.aio.ServicerContext
    ) -> pb.SetVersionControlResponse:
        mode = request.version_control
        if mode not in (pb.VERSION_CONTROL_FOLLOW_LOOP, pb.VERSION_CONTROL_PAUSE, pb.VERSION_CONTROL_PIN):
            raise InvalidArgument("version_control must be FOLLOW_LOOP, PAUSE or PIN")
        if mode == pb.VERSION_CONTROL_PIN and not request.pinned_version:
            raise InvalidArgument('pinned_version is required with VERSION_CONTROL_PIN, e.g. "1.3"')
        if self.updater is None:
            raise FailedPrecondition(
                "this detector serves static models only (DETECTOR_MODEL_PATHS); nothing to follow"
            )
        pinned = request.pinned_version if mode == pb.VERSION_CONTROL_PIN else ""
        await self.updater.set_version_control(mode, pinned)
        log.info("version control", mode=pb.VersionControl.Name(mode), pinned=pinned)
        return pb.SetVersionControlResponse(version_control=mode, pinned_version=pinned)
