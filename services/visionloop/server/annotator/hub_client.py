"""What the annotator asks of the hub: images, categories, annotations, detections, queue priorities.

Hub answers that a client can act on (NOT_FOUND, INVALID_ARGUMENT, FAILED_PRECONDITION) come back
to the annotator's caller with the same code; an unreachable hub is UNAVAILABLE.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Sequence
from contextlib import asynccontextmanager
from typing import TypeVar

import grpc

from visionloop.client.channel import create_aio_channel
from visionloop.common.v1 import annotation_pb2, category_pb2, detection_pb2, image_pb2, training_pb2
from visionloop.loop.v1 import (
    annotation_service_pb2,
    annotation_service_pb2_grpc,
    deployment_service_pb2,
    deployment_service_pb2_grpc,
    image_service_pb2,
    image_service_pb2_grpc,
    project_service_pb2,
    project_service_pb2_grpc,
    training_service_pb2,
    training_service_pb2_grpc,
)
from visionloop.runtime import errors
from visionloop.runtime.config import PeerSettings

TIMEOUT = 60.0
ProjectRef = project_service_pb2.ProjectRef
T = TypeVar("T")
_PASSED_ON: dict[grpc.StatusCode, type[errors.ServiceError]] = {
    grpc.StatusCode.NOT_FOUND: errors.NotFound,
    grpc.StatusCode.INVALID_ARGUMENT: errors.InvalidArgument,
    grpc.StatusCode.FAILED_PRECONDITION: errors.FailedPrecondition,
    grpc.StatusCode.PERMISSION_DENIED: errors.PermissionDenied,
    grpc.StatusCode.UNAVAILABLE: errors.Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: errors.Unavailable,
}


@asynccontextmanager
async def _hub_errors() -> AsyncIterator[None]:
    try:
        yield
    except grpc.aio.AioRpcError as error:
        kind = _PASSED_ON.get(error.code())
        if kind is None:
            raise
        raise kind(f"hub: {error.details()}") from None


async def call(awaitable: Awaitable[T]) -> T:
    async with _hub_errors():
        return await awaitable


class AnnotatorHub:
    """The hub over one channel (LOOP_HOST, LOOP_TOKEN, TLS files)."""

    def __init__(self, peer: PeerSettings) -> None:
        self.channel = create_aio_channel(peer.channel_config())
        self.images = image_service_pb2_grpc.ImageServiceStub(self.channel)
        self.annotations = annotation_service_pb2_grpc.AnnotationServiceStub(self.channel)
        self.projects = project_service_pb2_grpc.ProjectServiceStub(self.channel)
        self.deployments = deployment_service_pb2_grpc.DeploymentServiceStub(self.channel)
        self.trainings = training_service_pb2_grpc.TrainingServiceStub(self.channel)

    async def close(self) -> None:
        await self.channel.close()

    async def image(self, ref: ProjectRef, image_id: str) -> tuple[image_pb2.ImageMetadata, bytes]:
        """An image's metadata and stored bytes; NOT_FOUND when the hub has no such image."""
        request = image_service_pb2.GetImageRequest(ref=ref, image_id=image_id)
        metadata = (await call(self.images.GetImage(request, timeout=TIMEOUT))).metadata
        parts: list[bytes] = []
        async with _hub_errors():
            download = image_service_pb2.DownloadImagesRequest(ref=ref, image_ids=[image_id])
            async for message in self.images.DownloadImages(download, timeout=TIMEOUT):
                if message.HasField("chunk"):
                    parts.append(message.chunk.data)
        return metadata, b"".join(parts)

    async def metadata(self, ref: ProjectRef, image_id: str) -> image_pb2.ImageMetadata:
        request = image_service_pb2.GetImageRequest(ref=ref, image_id=image_id)
        return (await call(self.images.GetImage(request, timeout=TIMEOUT))).metadata

    async def categories(self, ref: ProjectRef) -> list[category_pb2.Category]:
        request = project_service_pb2.ListCategoriesRequest(ref=ref)
        return list((await call(self.projects.ListCategories(request, timeout=TIMEOUT))).categories)

    async def create_annotation(
        self, ref: ProjectRef, annotation: annotation_pb2.Annotation
    ) -> annotation_pb2.Annotation:
        request = annotation_service_pb2.CreateAnnotationRequest(ref=ref, annotation=annotation)
        return (await call(self.annotations.CreateAnnotation(request, timeout=TIMEOUT))).annotation

    async def update_annotation(
        self, ref: ProjectRef, annotation: annotation_pb2.Annotation
    ) -> annotation_pb2.Annotation:
        request = annotation_service_pb2.UpdateAnnotationRequest(ref=ref, annotation=annotation)
        return (await call(self.annotations.UpdateAnnotation(request, timeout=TIMEOUT))).annotation

    async def delete_annotation(self, ref: ProjectRef, annotation_id: str) -> None:
        request = annotation_service_pb2.DeleteAnnotationRequest(ref=ref, annotation_id=annotation_id)
        await call(self.annotations.DeleteAnnotation(request, timeout=TIMEOUT))

    async def list_annotations(self, ref: ProjectRef, image_id: str) -> list[annotation_pb2.Annotation]:
        request = annotation_service_pb2.ListAnnotationsRequest(ref=ref, image_id=image_id)
        return list((await call(self.annotations.ListAnnotations(request, timeout=TIMEOUT))).annotations)

    async def detections(self, ref: ProjectRef, image_id: str, model_version: str = "") -> detection_pb2.Detections:
        request = annotation_service_pb2.GetDetectionsRequest(ref=ref, image_id=image_id, model_version=model_version)
        return (await call(self.annotations.GetDetections(request, timeout=TIMEOUT))).detections

    async def put_detections(self, ref: ProjectRef, image_id: str, detections: detection_pb2.Detections) -> int:
        request = annotation_service_pb2.PutDetectionsRequest(ref=ref, image_id=image_id, detections=detections)
        return (await call(self.annotations.PutDetections(request, timeout=TIMEOUT))).stored

    async def queue(self, ref: ProjectRef, limit: int = 100_000) -> list[image_pb2.ImageMetadata]:
        """The annotation queue, highest priority first."""
        images: list[image_pb2.ImageMetadata] = []
        token = ""
        while len(images) < limit:
            request = image_service_pb2.ListAnnotationQueueRequest(
                ref=ref, page_size=min(1000, limit - len(images)), page_token=token
            )
            page = await call(self.images.ListAnnotationQueue(request, timeout=TIMEOUT))
            images.extend(page.images)
            token = page.next_page_token
            if not token:
                break
        return images

    async def inbox(self, ref: ProjectRef, limit: int) -> list[image_pb2.ImageMetadata]:
        """Up to ``limit`` inbox images (what detectors uploaded, not yet triaged), oldest first."""
        images: list[image_pb2.ImageMetadata] = []
        token = ""
        while len(images) < limit:
            request = image_service_pb2.ListImagesRequest(
                ref=ref,
                filter=image_service_pb2.ImageFilter(states=[image_pb2.IMAGE_STATE_INBOX]),
                order=image_service_pb2.IMAGE_ORDER_OLDEST,
                page_size=min(1000, limit - len(images)),
                page_token=token,
            )
            page = await call(self.images.ListImages(request, timeout=TIMEOUT))
            images.extend(page.images)
            token = page.next_page_token
            if not token:
                break
        return images

    async def annotated(self, ref: ProjectRef, limit: int = 1000) -> list[image_pb2.ImageMetadata]:
        """Images that already carry annotations (the diversity criterion's reference set)."""
        filter_ = image_service_pb2.ImageFilter(has_annotations=True)
        request = image_service_pb2.ListImagesRequest(ref=ref, filter=filter_, page_size=min(1000, limit))
        return list((await call(self.images.ListImages(request, timeout=TIMEOUT))).images)

    async def set_priority(self, ref: ProjectRef, image_id: str, priority: float) -> None:
        request = image_service_pb2.UpdateImageRequest(ref=ref, image_id=image_id, priority=priority)
        await call(self.images.UpdateImage(request, timeout=TIMEOUT))

    async def top_priority(self, ref: ProjectRef) -> float:
        """The highest priority among images waiting for people (inbox and queue); 0 when none wait."""
        request = image_service_pb2.ListImagesRequest(
            ref=ref,
            filter=image_service_pb2.ImageFilter(states=[image_pb2.IMAGE_STATE_INBOX, image_pb2.IMAGE_STATE_ANNOTATE]),
            order=image_service_pb2.IMAGE_ORDER_PRIORITY,
            page_size=1,
        )
        page = await call(self.images.ListImages(request, timeout=TIMEOUT))
        return page.images[0].priority if page.images else 0.0

    async def enqueue(self, ref: ProjectRef, image_id: str, priority: float, tag: str) -> None:
        """Move an image to the annotation queue with ``priority`` and ``tag``."""
        request = image_service_pb2.UpdateImageRequest(
            ref=ref, image_id=image_id, state=image_pb2.IMAGE_STATE_ANNOTATE, priority=priority, add_tags=[tag]
        )
        await call(self.images.UpdateImage(request, timeout=TIMEOUT))

    async def set_state(self, ref: ProjectRef, image_id: str, state: image_pb2.ImageState) -> None:
        request = image_service_pb2.UpdateImageRequest(ref=ref, image_id=image_id, state=state)
        await call(self.images.UpdateImage(request, timeout=TIMEOUT))

    async def deployed_version(self, ref: ProjectRef) -> str:
        """The version the project's deployment resolves to; empty when nothing is deployed."""
        request = deployment_service_pb2.GetDeploymentRequest(ref=ref)
        return (await call(self.deployments.GetDeployment(request, timeout=TIMEOUT))).deployment.resolved_version

    async def create_training(self, ref: ProjectRef, spec: training_pb2.TrainingSpec) -> training_pb2.Training:
        request = training_service_pb2.CreateTrainingRequest(ref=ref, spec=spec)
        return (await call(self.trainings.CreateTraining(request, timeout=TIMEOUT))).training

    async def download(self, ref: ProjectRef, image_ids: Sequence[str]) -> dict[str, bytes]:
        found: dict[str, bytes] = {}
        current, parts = "", []  # type: tuple[str, list[bytes]]
        async with _hub_errors():
            request = image_service_pb2.DownloadImagesRequest(ref=ref, image_ids=list(image_ids))
            async for message in self.images.DownloadImages(request, timeout=600):
                if message.HasField("header"):
                    if current:
                        found[current] = b"".join(parts)
                    current, parts = message.header.name, []
                else:
                    parts.append(message.chunk.data)
        if current:
            found[current] = b"".join(parts)
        return found
