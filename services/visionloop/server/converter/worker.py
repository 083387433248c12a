"""The converter's engine: claims conversions from the hub, runs them, publishes or reports failure.

New work arrives through the hub's event stream (a model published, a format added, a failed
conversion offered again): each event wakes the worker, which claims until nothing is pending.
Claims are leased and compare-and-set on the hub, so with several replicas every conversion runs
once. A lease that runs out (a replica died mid-conversion) sends no event; a slow backstop
re-check every ``CONVERTER_SWEEP_SECONDS`` picks such conversions up.

A failure is reported with its reason; the hub offers it again until the attempts are spent
(``CONVERTER_MAX_ATTEMPTS`` here, the hub's own limit there) or the failure is permanent (input
that can never convert). Other conversions go on meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import shutil
import tempfile
import time
from collections import deque
from datetime import timedelta
from pathlib import Path

import grpc
from prometheus_client import Counter, Histogram

from visionloop.common.v1 import node_pb2
from visionloop.converter.v1 import converter_service_pb2 as pb
from visionloop.lib.model_format.model_json import pack
from visionloop.lib.model_format.triton import EntryOptions
from visionloop.loop.v1 import event_service_pb2 as events_pb
from visionloop.loop.v1 import model_service_pb2
from visionloop.runtime.logging import get_logger
from visionloop.runtime.presence import Presence
from visionloop.runtime.tasks import cancel_and_wait, raise_if_cancelling
from visionloop.server.converter import pipeline
from visionloop.server.converter.artifacts import unpack
from visionloop.server.converter.config import ConverterSettings
from visionloop.server.converter.errors import ConversionFailed
from visionloop.server.converter.hub_client import ConverterHub, ProjectRef
from visionloop.server.converter.repository import TritonRepository

log = get_logger(__name__)

CONVERSIONS = Counter(
    "visionloop_converter_conversions", "Conversions run, by target format and result.", ["target", "result"]
)
SECONDS = Histogram(
    "visionloop_converter_conversion_seconds",
    "Time from claim to publish or failure report.",
    ["target"],
    buckets=(1, 2, 5, 10, 30, 60, 120, 300, 600, 1800),
)
WATCHED = (
    events_pb.EVENT_TYPE_MODEL_PUBLISHED,
    events_pb.EVENT_TYPE_FORMAT_ADDED,
    events_pb.EVENT_TYPE_CONVERSION_REQUESTED,
)
RECENT = 200  # conversions ListConversions remembers
MAX_BACKOFF = 60.0
Claim = model_service_pb2.ClaimConversionResponse


def default_options(settings: ConverterSettings) -> pipeline.Options:
    return pipeline.Options(
        opset=settings.opset,
        fp32_max_abs_diff=settings.fp32_max_abs_diff,
        fp16_max_map_drop=settings.fp16_max_map_drop,
        int8_max_map_drop=settings.int8_max_map_drop,
        int8_mode=settings.int8_mode,
        parity_samples=settings.parity_samples,
        entry=EntryOptions(
            max_batch_size=settings.triton_max_batch_size,
            instances=settings.triton_instances,
            max_queue_delay_us=settings.triton_max_queue_delay_us,
            gpu=settings.triton_onnx_gpu,
            tensorrt=settings.tensorrt,
            tensorrt_precision=settings.tensorrt_precision,
        ),
    )


class Converter:
    """Claims and runs conversions; one at a time per process (they are CPU-bound)."""

    def __init__(
        self, settings: ConverterSettings, hub: ConverterHub, repository: TritonRepository, workdir: Path
    ) -> None:
        self.settings = settings
        self.hub = hub
        self.repository = repository
        self.workdir = workdir
        self.targets = settings.targets()
        self.options = default_options(settings)
        self.recent: deque[pb.Conversion] = deque(maxlen=RECENT)
        self.cursor = ""  # last event seen; a reconnect resumes after it
        self.lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._changed = asyncio.Event()  # replaced on every change; see changed()
        self._tasks: list[asyncio.Task[None]] = []
        self._presence = Presence(settings, self._status)  # operators see the converter in ListNodes

    @property
    def scope(self) -> ProjectRef | None:
        return None if self.settings.all_projects else self.settings.project_ref

    @property
    def lease(self) -> timedelta:
        return timedelta(seconds=self.settings.lease_seconds)

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        for stale in self.workdir.iterdir():  # conversions a previous run left half-done
            shutil.rmtree(stale, ignore_errors=True)
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._work(), name="converter-work"),
            loop.create_task(self._watch(), name="converter-watch"),
        ]
        self._presence.start()

    async def stop(self) -> None:
        await cancel_and_wait(self._tasks)
        self._tasks = []
        await self._presence.stop()

    def wake(self) -> None:
        self._wake.set()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def changed(self, within: float) -> None:
        """Return after the next hub event or finished conversion, or after ``within`` seconds."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout=within)

    # --- the event-driven loop --------------------------------------------------------------

    async def _work(self) -> None:
        while True:
            raise_if_cancelling()
            self._wake.clear()  # before draining: an event during the drain triggers another round
            try:
                await self.drain()
            except grpc.aio.AioRpcError as error:  # unreachable, or e.g. LOOP_PROJECT missing: retried later
                raise_if_cancelling()
                log.warning("cannot claim conversions from the hub", code=error.code().name, reason=error.details())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.settings.sweep_seconds)

    async def drain(self) -> None:
        """Claim and run conversions until the hub has none pending for this converter."""
        while True:
            async with self.lock:
                claim = await self.hub.claim(self.targets, self.lease, self.scope)
                if claim is None:
                    return
                record = await self.run(claim, self.options)
            if record.state == pb.CONVERSION_STATE_FAILED and self.settings.retry_backoff_seconds:
                # A retried conversion comes straight back (oldest first): give transient causes time.
                pause = min(MAX_BACKOFF, self.settings.retry_backoff_seconds * 2 ** (claim.attempt - 1))
                await asyncio.sleep(pause)

    async def _watch(self) -> None:
        delay = 1.0
        while True:
            try:
                async for response in self.hub.watch(self.cursor, WATCHED, self.scope):
                    delay = 1.0
                    self.cursor = response.event.cursor
                    self.wake()
                    self._notify()
            except grpc.aio.AioRpcError as error:
                raise_if_cancelling()
                if error.code() is grpc.StatusCode.OUT_OF_RANGE:  # history gone: start over from now
                    self.cursor = ""
                    self.wake()
                    continue
                log.warning("event stream lost; reconnecting", code=error.code().name, retry_in=round(delay, 1))
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, MAX_BACKOFF)
            self.wake()  # events may have been missed while away

    def _status(self) -> node_pb2.NodeStatus:
        return node_pb2.NodeStatus(
            node_id=self.hub.node_id,
            name=f"converter {self.hub.node_id[-8:]}",
            type=node_pb2.NODE_TYPE_CONVERTER,
            state=node_pb2.NODE_STATE_BUSY if self.lock.locked() else node_pb2.NODE_STATE_IDLE,
            organization="" if self.settings.all_projects else self.settings.loop_organization,
            project="" if self.settings.all_projects else self.settings.loop_project,
            capabilities=self.targets,
        )

    # --- one conversion ---------------------------------------------------------------------

    async def run(self, claim: Claim, options: pipeline.Options) -> pb.Conversion:
        """Run a claimed conversion to its end: published, or reported as failed. Never raises
        for a failed conversion; the record says what happened."""
        record = pb.Conversion(
            id=claim.conversion_id,
            organization=claim.key.ref.organization,
            project=claim.key.ref.project,
            version=claim.key.version,
            source_format=claim.source_format,
            target_format=claim.target_format,
            state=pb.CONVERSION_STATE_RUNNING,
        )
        record.start_time.GetCurrentTime()
        self.recent.appendleft(record)
        started = time.monotonic()
        fields = {
            "conversion": claim.conversion_id,
            "project": f"{record.organization}/{record.project}",
            "version": record.version,
            "source": claim.source_format,
            "target": claim.target_format,
            "attempt": claim.attempt,
        }
        log.info("conversion started", **fields)
        try:
            result = await self._convert(claim, options)
        except ConversionFailed as failed:
            await self._failed(record, claim, failed, fields)
        except (OSError, grpc.aio.AioRpcError) as error:  # the hub or the disk, not the model
            raise_if_cancelling()  # a stop, not a failure: the lease runs out and the conversion is offered again
            reason = error.details() if isinstance(error, grpc.aio.AioRpcError) else str(error)
            await self._failed(record, claim, ConversionFailed(f"transfer failed: {reason}"), fields)
        except Exception as error:  # a bug here must not take the worker down; the reason says what broke
            raise_if_cancelling()
            log.exception("conversion crashed", **fields)
            await self._failed(
                record, claim, ConversionFailed(f"internal error: {type(error).__name__}: {error}"), fields
            )
        else:
            record.state = pb.CONVERSION_STATE_SUCCEEDED
            record.parity.CopyFrom(result.parity)
            record.reason = result.note
            CONVERSIONS.labels(claim.target_format, "succeeded").inc()
            log.info(
                "conversion published",
                max_abs_diff=result.parity.max_abs_diff,
                samples=result.parity.samples,
                note=result.note or None,
                triton_model=result.triton_name or None,
                **fields,
            )
        record.end_time.GetCurrentTime()
        self._notify()
        SECONDS.labels(claim.target_format).observe(time.monotonic() - started)
        return record

    async def _failed(self, record: pb.Conversion, claim: Claim, failed: ConversionFailed, fields: dict) -> None:
        permanent = failed.permanent or claim.attempt >= self.settings.max_attempts
        record.state = pb.CONVERSION_STATE_FAILED
        record.reason = failed.reason
        if failed.parity is not None:
            record.parity.CopyFrom(failed.parity)
        CONVERSIONS.labels(claim.target_format, "failed").inc()
        try:
            will_retry = await self.hub.report_failure(claim.conversion_id, failed.reason, permanent)
        except grpc.aio.AioRpcError as error:  # the lease runs out and the hub offers it again
            log.error("could not report a failed conversion", code=error.code().name, reason=failed.reason, **fields)
            return
        log.warning("conversion failed", reason=failed.reason, permanent=permanent, will_retry=will_retry, **fields)

    async def _convert(self, claim: Claim, options: pipeline.Options) -> pipeline.Result:
        workdir = Path(tempfile.mkdtemp(prefix="conversion-", dir=self.workdir))
        try:
            archive = workdir / "source.zip"
            await self.hub.download(claim.key, claim.source_format, archive)
            source = await asyncio.to_thread(unpack, archive, workdir / "source", self.settings.max_uncompressed_bytes)
            archive.unlink()
            samples = await self.hub.samples(claim.key.ref, *self._sample_counts(claim.target_format, options))
            job = pipeline.Job(
                source=source,
                source_format=claim.source_format,
                target=claim.target_format,
                organization=claim.key.ref.organization,
                project=claim.key.ref.project,
                version=claim.key.version,
                workdir=workdir,
                options=options,
                samples=samples,
                repository_location=self.repository.location,
            )
            result = await asyncio.to_thread(pipeline.convert, job)
            if result.triton_files is not None:  # the entry exists before the hub announces the format
                await asyncio.to_thread(self.repository.publish, result.triton_name, result.triton_files)
            packed = await asyncio.to_thread(pack, result.folder, workdir / "target.zip")
            await self.hub.upload(claim.key, claim.target_format, packed)
            return result
        finally:
            await asyncio.to_thread(shutil.rmtree, workdir, True)

    def _sample_counts(self, target: str, options: pipeline.Options) -> tuple[int, int]:
        """(validation, calibration) images to fetch: few for FP32 checks, the full set for mAP."""
        if options.skip_parity:
            validation = 0
        elif target in pipeline.REDUCED_TARGETS:
            validation = self.settings.validation_images
        else:
            validation = min(options.parity_samples, self.settings.validation_images)
        calibration = self.settings.calibration_images if target == "onnx_int8" and options.int8_mode == "static" else 0
        return validation, calibration
