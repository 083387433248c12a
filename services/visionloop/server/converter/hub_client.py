"""What the converter asks of the hub: conversion claims, model zips, sample images, events, presence."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from pathlib import Path

import grpc
from google.protobuf import duration_pb2

from visionloop.client.channel import create_aio_channel
from visionloop.common.v1 import image_pb2, model_pb2
from visionloop.lib import images
from visionloop.loop.v1 import (
    annotation_service_pb2,
    annotation_service_pb2_grpc,
    event_service_pb2,
    event_service_pb2_grpc,
    image_service_pb2,
    image_service_pb2_grpc,
    model_service_pb2,
    model_service_pb2_grpc,
    project_service_pb2,
)
from visionloop.runtime.config import PeerSettings
from visionloop.runtime.model_transfer import download_model, upload_model
from visionloop.server.converter.samples import Samples, ValidationImage

TIMEOUT = 60.0
LIVE_STATES = (
    image_pb2.IMAGE_STATE_INBOX,
    image_pb2.IMAGE_STATE_ANNOTATE,
    image_pb2.IMAGE_STATE_REVIEW,
    image_pb2.IMAGE_STATE_COMPLETE,
)
ProjectRef = project_service_pb2.ProjectRef


def _duration(value: timedelta) -> duration_pb2.Duration:
    duration = duration_pb2.Duration()
    duration.FromTimedelta(value)
    return duration


def not_found(error: grpc.aio.AioRpcError) -> bool:
    return error.code() is grpc.StatusCode.NOT_FOUND


class ConverterHub:
    """The hub over one channel (LOOP_HOST, LOOP_TOKEN, TLS files) for one converter node."""

    def __init__(self, peer: PeerSettings, node_id: str, limits: images.Limits = images.DEFAULT_LIMITS) -> None:
        self.node_id = node_id
        self.limits = limits  # of the images conversions decode
        self._channel = create_aio_channel(peer.channel_config())
        self.models = model_service_pb2_grpc.ModelServiceStub(self._channel)
        self.events = event_service_pb2_grpc.EventServiceStub(self._channel)
        self.images = image_service_pb2_grpc.ImageServiceStub(self._channel)
        self.annotations = annotation_service_pb2_grpc.AnnotationServiceStub(self._channel)

    async def close(self) -> None:
        await self._channel.close()

    # --- conversions ------------------------------------------------------------------------

    async def claim(
        self, targets: Sequence[str], lease: timedelta, ref: ProjectRef | None = None
    ) -> model_service_pb2.ClaimConversionResponse | None:
        """The next pending conversion to one of ``targets`` under a lease; None when nothing is pending."""
        request = model_service_pb2.ClaimConversionRequest(
            node_id=self.node_id, target_formats=list(targets), lease=_duration(lease), ref=ref
        )
        try:
            return await self.models.ClaimConversion(request, timeout=TIMEOUT)
        except grpc.aio.AioRpcError as error:
            if not_found(error) and "no conversion" in (error.details() or ""):
                return None
            raise

    async def report_failure(self, conversion_id: str, reason: str, permanent: bool) -> bool:
        """Record the failure on the hub; True when the hub will offer the conversion again."""
        request = model_service_pb2.ReportConversionFailureRequest(
            conversion_id=conversion_id, reason=reason[:2000], permanent=permanent
        )
        return (await self.models.ReportConversionFailure(request, timeout=TIMEOUT)).will_retry

    async def model(self, key: model_service_pb2.ModelKey, fmt: str = "") -> model_pb2.ModelInfo | None:
        """The version's model.json in ``fmt``; None when the version or the format does not exist."""
        try:
            return (await self.models.GetModel(model_service_pb2.GetModelRequest(key=key, format=fmt))).model
        except grpc.aio.AioRpcError as error:
            if not_found(error):
                return None
            raise

    async def download(self, key: model_service_pb2.ModelKey, fmt: str, destination: Path) -> None:
        await download_model(self.models, key, fmt, destination)

    async def upload(self, key: model_service_pb2.ModelKey, fmt: str, path: Path) -> model_pb2.ModelInfo:
        """Add ``fmt`` to the existing version ``key`` (the hub marks the conversion done)."""
        header = model_service_pb2.UploadModelHeader(ref=key.ref, format=fmt, version=key.version)
        return await upload_model(self.models, header, path)

    # --- sample images ----------------------------------------------------------------------

    async def _list(self, ref: ProjectRef, filter_: image_service_pb2.ImageFilter, limit: int) -> list[str]:
        ids: list[str] = []
        token = ""
        while len(ids) < limit:
            request = image_service_pb2.ListImagesRequest(
                ref=ref,
                filter=filter_,
                order=image_service_pb2.IMAGE_ORDER_OLDEST,  # the same images every time: comparable reports
                page_size=min(500, limit - len(ids)),
                page_token=token,
            )
            page = await self.images.ListImages(request, timeout=TIMEOUT)
            ids += [image.id for image in page.images]
            if not (token := page.next_page_token):
                break
        return ids[:limit]

    async def _download_images(self, ref: ProjectRef, image_ids: Sequence[str]) -> dict[str, bytes]:
        """Image bytes by id, each checked against its sha256 (the id is the content hash)."""
        found: dict[str, bytes] = {}
        if not image_ids:
            return found
        current, expected = "", ""
        parts: list[bytes] = []
        request = image_service_pb2.DownloadImagesRequest(ref=ref, image_ids=list(image_ids))
        async for message in self.images.DownloadImages(request, timeout=600):
            if message.HasField("header"):
                if current:
                    found[current] = _checked(current, expected, parts)
                current, expected, parts = message.header.name, message.header.sha256, []
            else:
                parts.append(message.chunk.data)
        if current:
            found[current] = _checked(current, expected, parts)
        return found

    async def samples(self, ref: ProjectRef, validation: int, calibration: int) -> Samples:
        """Up to ``validation`` complete, annotated images with their annotations, and up to
        ``calibration`` images of any live state (validation images first)."""
        filter_ = image_service_pb2.ImageFilter(states=[image_pb2.IMAGE_STATE_COMPLETE], has_annotations=True)
        validation_ids = await self._list(ref, filter_, validation) if validation else []
        calibration_ids: list[str] = []
        if calibration:
            live = await self._list(ref, image_service_pb2.ImageFilter(states=list(LIVE_STATES)), calibration)
            calibration_ids = list(dict.fromkeys([*validation_ids, *live]))[:calibration]
        data = await self._download_images(ref, list(dict.fromkeys([*validation_ids, *calibration_ids])))
        validation_images = []
        for image_id in validation_ids:
            request = annotation_service_pb2.ListAnnotationsRequest(ref=ref, image_id=image_id)
            annotations = (await self.annotations.ListAnnotations(request, timeout=TIMEOUT)).annotations
            validation_images.append(ValidationImage(image_id, data[image_id], tuple(annotations)))
        return Samples(validation_images, [data[i] for i in calibration_ids], self.limits)

    # --- events and presence ----------------------------------------------------------------

    def watch(
        self, cursor: str, types: Sequence[event_service_pb2.EventType], ref: ProjectRef | None = None
    ) -> AsyncIterator[event_service_pb2.WatchEventsResponse]:
        request = event_service_pb2.WatchEventsRequest(cursor=cursor, types=list(types), ref=ref)
        return self.events.WatchEvents(request)


def _checked(image_id: str, expected: str, parts: list[bytes]) -> bytes:
    data = b"".join(parts)
    if hashlib.sha256(data).hexdigest() != expected:
        raise OSError(f"image {image_id} arrived corrupted (sha256 mismatch)")
    return data
