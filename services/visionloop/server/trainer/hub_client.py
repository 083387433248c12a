"""What the trainer asks of the hub, as blocking calls for the training's worker thread."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from datetime import timedelta
from pathlib import Path

import grpc
from google.protobuf import duration_pb2

from visionloop.common.v1 import (
    annotation_pb2,
    category_pb2,
    detection_pb2,
    image_pb2,
    model_pb2,
    training_pb2,
)
from visionloop.loop.v1 import (
    annotation_service_pb2,
    image_service_pb2,
    project_service_pb2,
    training_service_pb2,
)
from visionloop.runtime.config import PeerSettings

# Images a training learns from and detections go to (trash is neither).
COMPLETE = (image_pb2.IMAGE_STATE_COMPLETE,)
LIVE = (
    image_pb2.IMAGE_STATE_INBOX,
    image_pb2.IMAGE_STATE_ANNOTATE,
    image_pb2.IMAGE_STATE_REVIEW,
    image_pb2.IMAGE_STATE_COMPLETE,
)


def _duration(value: timedelta) -> duration_pb2.Duration:
    duration = duration_pb2.Duration()
    duration.FromTimedelta(value)
    return duration


class TrainerHub:
    """The hub for one trainer node and its project."""

    def __init__(self, peer: PeerSettings, node_id: str, lease: timedelta, timeout: float = 60.0) -> None:
        self.peer = peer
        self.node_id = node_id
        self.lease = lease
        self.timeout = timeout
        self.ref = peer.project_ref  # trainings are claimed from this project only
        self._client = peer.loop_client(timeout)

    def close(self) -> None:
        self._client.close()

    # --- queue ---------------------------------------------------------------------

    def claim(self, variants: Sequence[str], training_id: str = "") -> training_pb2.Training | None:
        """The next queued training of the configured project (or exactly ``training_id``); None when none."""
        request = training_service_pb2.ClaimTrainingRequest(
            node_id=self.node_id,
            model_variants=list(variants),
            lease=_duration(self.lease),
            ref=self.peer.project_ref,
            training_id=training_id,
        )
        try:
            return self._client.trainings.ClaimTraining(request, timeout=self.timeout).training
        except grpc.RpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND and not training_id:
                return None
            raise

    def update(self, training_id: str, status: training_pb2.TrainingStatus) -> training_pb2.Training:
        """Report status and renew the lease; the answer carries stop and abort requests."""
        request = training_service_pb2.UpdateTrainingStatusRequest(
            training_id=training_id, node_id=self.node_id, status=status, lease=_duration(self.lease)
        )
        return self._client.trainings.UpdateTrainingStatus(request, timeout=self.timeout).training

    def finish(
        self, training_id: str, phase: training_pb2.TrainingPhase, status: training_pb2.TrainingStatus, version: str
    ) -> training_pb2.Training:
        request = training_service_pb2.FinishTrainingRequest(
            training_id=training_id, node_id=self.node_id, phase=phase, status=status, result_model_version=version
        )
        return self._client.trainings.FinishTraining(request, timeout=self.timeout).training

    # --- data -------------------------------------------------------------------------------

    def categories(self) -> list[category_pb2.Category]:
        request = project_service_pb2.ListCategoriesRequest(ref=self.ref)
        return list(self._client.projects.ListCategories(request, timeout=self.timeout).categories)

    def images(self, states: Sequence[image_pb2.ImageState]) -> Iterator[image_pb2.ImageMetadata]:
        """Every image in ``states``, oldest first, page by page."""
        token = ""
        while True:
            request = image_service_pb2.ListImagesRequest(
                ref=self.ref,
                filter=image_service_pb2.ImageFilter(states=list(states)),
                order=image_service_pb2.IMAGE_ORDER_OLDEST,
                page_size=500,
                page_token=token,
            )
            page = self._client.images.ListImages(request, timeout=self.timeout)
            yield from page.images
            if not (token := page.next_page_token):
                return

    def annotations(self, image_id: str) -> list[annotation_pb2.Annotation]:
        request = annotation_service_pb2.ListAnnotationsRequest(ref=self.ref, image_id=image_id)
        return list(self._client.annotations.ListAnnotations(request, timeout=self.timeout).annotations)

    def download_images(self, image_ids: Sequence[str]) -> Iterator[tuple[str, bytes]]:
        """(id, bytes) per image, each checked against its sha256 (the id is the content hash)."""
        request = image_service_pb2.DownloadImagesRequest(ref=self.ref, image_ids=list(image_ids))
        current = ""
        parts: list[bytes] = []
        expected = ""

        def done() -> tuple[str, bytes]:
            data = b"".join(parts)
            if hashlib.sha256(data).hexdigest() != expected:
                raise OSError(f"image {current} arrived corrupted (sha256 mismatch)")
            return current, data

        for message in self._client.images.DownloadImages(request, timeout=max(self.timeout, 600)):
            if message.HasField("header"):
                if current:
                    yield done()
                current, parts, expected = message.header.name, [], message.header.sha256
            else:
                parts.append(message.chunk.data)
        if current:
            yield done()

    # --- results ----------------------------------------------------------------------------

    def upload_model(self, path: Path, fmt: str, version: str) -> model_pb2.ModelInfo:
        return self._client.upload_model(path, fmt, version=version)

    def download_model(self, version: str, fmt: str, destination: Path) -> Path:
        return self._client.download_model(version, fmt, destination)

    def put_detections(self, image_id: str, detections: detection_pb2.Detections) -> None:
        request = annotation_service_pb2.PutDetectionsRequest(ref=self.ref, image_id=image_id, detections=detections)
        self._client.annotations.PutDetections(request, timeout=self.timeout)
