"""``LoopClient``: blocking client of the hub for scripts, the CLI and robots that upload directly."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import grpc

from visionloop.client.channel import ChannelConfig, create_channel
from visionloop.common.v1 import category_pb2, image_pb2, model_pb2, training_pb2, transfer_pb2
from visionloop.loop.v1 import (
    annotation_service_pb2,
    annotation_service_pb2_grpc,
    deployment_service_pb2,
    deployment_service_pb2_grpc,
    image_service_pb2,
    image_service_pb2_grpc,
    model_service_pb2,
    model_service_pb2_grpc,
    project_service_pb2,
    project_service_pb2_grpc,
    training_service_pb2,
    training_service_pb2_grpc,
)

CHUNK_BYTES = 1024 * 1024
DATASET_FORMATS = {
    "coco": annotation_service_pb2.DATASET_FORMAT_COCO,
    "yolo": annotation_service_pb2.DATASET_FORMAT_YOLO,
}
Progress = Callable[[int, int], None]  # (bytes done, bytes in all)
CATEGORY_TYPES = {
    "box": category_pb2.CATEGORY_TYPE_BOX,
    "point": category_pb2.CATEGORY_TYPE_POINT,
    "segmentation": category_pb2.CATEGORY_TYPE_SEGMENTATION,
    "classification": category_pb2.CATEGORY_TYPE_CLASSIFICATION,
}


@dataclass(frozen=True)
class ImageItem:
    """One image of a batch upload."""

    data: bytes
    tags: Sequence[str] = ()
    camera_id: str = ""
    source: str = ""


def _chunks(data: bytes) -> Iterator[transfer_pb2.BlobChunk]:
    for offset in range(0, len(data), CHUNK_BYTES):
        yield transfer_pb2.BlobChunk(offset=offset, data=data[offset : offset + CHUNK_BYTES])


def file_digest(path: Path) -> tuple[str, int]:
    """The hex sha256 and size of a file, read in chunks."""
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as src:
        while block := src.read(CHUNK_BYTES):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


def _file_chunks(path: Path, size: int, progress: Progress | None) -> Iterator[transfer_pb2.BlobChunk]:
    """Chunks read as they are sent, so a dataset of any size never sits in memory."""
    offset = 0
    with path.open("rb") as src:
        while data := src.read(CHUNK_BYTES):
            yield transfer_pb2.BlobChunk(offset=offset, data=data)
            offset += len(data)
            if progress is not None:
                progress(offset, size)


def _dataset_format(name: str) -> annotation_service_pb2.DatasetFormat:
    try:
        return DATASET_FORMATS[name.lower()]
    except KeyError:
        raise ValueError(f"dataset format {name!r} is not one of {', '.join(DATASET_FORMATS)}") from None


class LoopClient:
    """Talks to one project of a hub (``organization``/``project``)."""

    def __init__(
        self,
        target: str,
        organization: str,
        project: str,
        *,
        token: str | None = None,
        root_certificates: str | Path | bytes | None = None,
        certificate_chain: str | Path | bytes | None = None,
        private_key: str | Path | bytes | None = None,
        timeout: float = 30.0,
    ) -> None:
        config = ChannelConfig(
            target=target,
            token=token,
            root_certificates=root_certificates,
            certificate_chain=certificate_chain,
            private_key=private_key,
        )
        self._channel = create_channel(config)
        self.ref = project_service_pb2.ProjectRef(organization=organization, project=project)
        self.timeout = timeout
        self.projects = project_service_pb2_grpc.ProjectServiceStub(self._channel)
        self.images = image_service_pb2_grpc.ImageServiceStub(self._channel)
        self.annotations = annotation_service_pb2_grpc.AnnotationServiceStub(self._channel)
        self.models = model_service_pb2_grpc.ModelServiceStub(self._channel)
        self.deployments = deployment_service_pb2_grpc.DeploymentServiceStub(self._channel)
        self.trainings = training_service_pb2_grpc.TrainingServiceStub(self._channel)

    # projects and categories
    def create_project(self, display_name: str = "", description: str = "") -> project_service_pb2.Project:
        project = project_service_pb2.Project(ref=self.ref, display_name=display_name, description=description)
        request = project_service_pb2.CreateProjectRequest(project=project)
        return self.projects.CreateProject(request, timeout=self.timeout).project

    def list_projects(self) -> list[project_service_pb2.Project]:
        request = project_service_pb2.ListProjectsRequest(organization=self.ref.organization)
        return list(self.projects.ListProjects(request, timeout=self.timeout).projects)

    def create_category(self, name: str, type_: str = "box", color: str = "") -> category_pb2.Category:
        category = category_pb2.Category(name=name, type=CATEGORY_TYPES[type_], color=color)
        request = project_service_pb2.CreateCategoryRequest(ref=self.ref, category=category)
        return self.projects.CreateCategory(request, timeout=self.timeout).category

    def list_categories(self) -> list[category_pb2.Category]:
        request = project_service_pb2.ListCategoriesRequest(ref=self.ref)
        return list(self.projects.ListCategories(request, timeout=self.timeout).categories)

    # images
    def upload_image(
        self, data: bytes, tags: Sequence[str] = (), camera_id: str = "", source: str = ""
    ) -> image_service_pb2.UploadImageResponse:
        metadata = image_pb2.ImageMetadata(tags=list(tags), camera_id=camera_id, source=source)
        request = image_service_pb2.UploadImageRequest(
            ref=self.ref, image=image_service_pb2.ImageUpload(data=data, metadata=metadata)
        )
        return self.images.UploadImage(request, timeout=self.timeout)

    def upload_images(self, items: Iterable[ImageItem]) -> Iterator[image_service_pb2.UploadImagesResponse]:
        """Stream a batch; yields one answer per image (``error_code`` 0 when stored), in order."""

        def requests() -> Iterator[image_service_pb2.UploadImagesRequest]:
            yield image_service_pb2.UploadImagesRequest(ref=self.ref)
            for sequence, item in enumerate(items):
                blob = transfer_pb2.BlobHeader(size_bytes=len(item.data), sha256=hashlib.sha256(item.data).hexdigest())
                metadata = image_pb2.ImageMetadata(tags=list(item.tags), camera_id=item.camera_id, source=item.source)
                header = image_service_pb2.ImageHeader(sequence=sequence, blob=blob, metadata=metadata)
                yield image_service_pb2.UploadImagesRequest(header=header)
                for chunk in _chunks(item.data):
                    yield image_service_pb2.UploadImagesRequest(chunk=chunk)

        return self.images.UploadImages(requests())

    def list_images(
        self,
        order: image_service_pb2.ImageOrder = image_service_pb2.IMAGE_ORDER_NEWEST,
        page_size: int = 100,
        **filters: object,
    ) -> Iterator[image_pb2.ImageMetadata]:
        token = ""
        while True:
            request = image_service_pb2.ListImagesRequest(
                ref=self.ref,
                order=order,
                page_size=page_size,
                page_token=token,
                filter=image_service_pb2.ImageFilter(**filters),  # type: ignore[arg-type]
            )
            page = self.images.ListImages(request, timeout=self.timeout)
            yield from page.images
            token = page.next_page_token
            if not token:
                return

    # datasets
    def import_dataset(
        self, path: Path, format_: str, tags: Sequence[str] = (), progress: Progress | None = None
    ) -> annotation_service_pb2.ImportDatasetResponse:
        """Send a COCO or YOLO zip in chunks; the hub verifies its sha256 and returns what it stored."""
        path = Path(path)
        sha256, size = file_digest(path)
        header = annotation_service_pb2.ImportDatasetHeader(
            ref=self.ref,
            format=_dataset_format(format_),
            blob=transfer_pb2.BlobHeader(
                name=path.name, content_type="application/zip", size_bytes=size, sha256=sha256
            ),
            tags=list(tags),
        )

        def requests() -> Iterator[annotation_service_pb2.ImportDatasetRequest]:
            yield annotation_service_pb2.ImportDatasetRequest(header=header)
            for chunk in _file_chunks(path, size, progress):
                yield annotation_service_pb2.ImportDatasetRequest(chunk=chunk)

        return self.annotations.ImportDataset(requests(), timeout=max(self.timeout, 3600))

    def export_dataset(self, format_: str, destination: Path, progress: Progress | None = None) -> Path:
        """Download the project's complete images as a COCO or YOLO zip to ``destination``, sha256 verified."""
        destination = Path(destination)
        request = annotation_service_pb2.ExportDatasetRequest(ref=self.ref, format=_dataset_format(format_))
        digest, received = hashlib.sha256(), 0
        header = transfer_pb2.BlobHeader()
        try:
            with destination.open("wb") as out:
                for message in self.annotations.ExportDataset(request, timeout=max(self.timeout, 3600)):
                    if message.HasField("header"):
                        header = message.header
                        continue
                    out.write(message.chunk.data)
                    digest.update(message.chunk.data)
                    received += len(message.chunk.data)
                    if progress is not None:
                        progress(received, header.size_bytes)
            if received != header.size_bytes or digest.hexdigest() != header.sha256:
                raise OSError(
                    f"dataset download corrupted: {received} bytes with sha256 {digest.hexdigest()}, "
                    f"expected {header.size_bytes} bytes with sha256 {header.sha256}"
                )
        except BaseException:
            destination.unlink(missing_ok=True)
            raise
        return destination

    # models and deployments
    def list_models(self, format_: str = "") -> list[model_pb2.ModelInfo]:
        request = model_service_pb2.ListModelsRequest(ref=self.ref, format=format_)
        return list(self.models.ListModels(request, timeout=self.timeout).models)

    def upload_model(self, path: Path, format_: str, version: str = "", new_major: bool = False) -> model_pb2.ModelInfo:
        data = Path(path).read_bytes()
        blob = transfer_pb2.BlobHeader(
            name=Path(path).name,
            content_type="application/zip",
            size_bytes=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
        )
        header = model_service_pb2.UploadModelHeader(
            ref=self.ref, format=format_, version=version, new_major=new_major, blob=blob
        )

        def requests() -> Iterator[model_service_pb2.UploadModelRequest]:
            yield model_service_pb2.UploadModelRequest(header=header)
            for chunk in _chunks(data):
                yield model_service_pb2.UploadModelRequest(chunk=chunk)

        return self.models.UploadModel(requests(), timeout=max(self.timeout, 600)).model

    def download_model(self, version: str, format_: str, destination: Path) -> Path:
        """Download a model zip to ``destination`` and verify its sha256."""
        key = model_service_pb2.ModelKey(ref=self.ref, version=version)
        request = model_service_pb2.DownloadModelRequest(key=key, format=format_)
        digest, expected = hashlib.sha256(), ""
        with Path(destination).open("wb") as out:
            for message in self.models.DownloadModel(request, timeout=max(self.timeout, 600)):
                if message.HasField("header"):
                    expected = message.header.sha256
                else:
                    out.write(message.chunk.data)
                    digest.update(message.chunk.data)
        if digest.hexdigest() != expected:
            Path(destination).unlink(missing_ok=True)
            raise OSError(f"model download corrupted: sha256 {digest.hexdigest()} != {expected}")
        return Path(destination)

    def deployment(self) -> deployment_service_pb2.Deployment:
        request = deployment_service_pb2.GetDeploymentRequest(ref=self.ref)
        return self.deployments.GetDeployment(request, timeout=self.timeout).deployment

    def pin(self, version: str) -> deployment_service_pb2.Deployment:
        request = deployment_service_pb2.SetDeploymentRequest(
            ref=self.ref, policy=deployment_service_pb2.DEPLOYMENT_POLICY_PINNED, pinned_version=version
        )
        return self.deployments.SetDeployment(request, timeout=self.timeout).deployment

    def follow_latest(self) -> deployment_service_pb2.Deployment:
        request = deployment_service_pb2.SetDeploymentRequest(
            ref=self.ref, policy=deployment_service_pb2.DEPLOYMENT_POLICY_FOLLOW_LATEST
        )
        return self.deployments.SetDeployment(request, timeout=self.timeout).deployment

    def rollback(self) -> deployment_service_pb2.Deployment:
        request = deployment_service_pb2.RollbackDeploymentRequest(ref=self.ref)
        return self.deployments.RollbackDeployment(request, timeout=self.timeout).deployment

    # trainings
    def create_training(self, spec: training_pb2.TrainingSpec) -> training_pb2.Training:
        request = training_service_pb2.CreateTrainingRequest(ref=self.ref, spec=spec)
        return self.trainings.CreateTraining(request, timeout=self.timeout).training

    def list_trainings(self) -> list[training_pb2.Training]:
        request = training_service_pb2.ListTrainingsRequest(ref=self.ref)
        return list(self.trainings.ListTrainings(request, timeout=self.timeout).trainings)

    def wait_ready(self, timeout: float = 30.0) -> None:
        grpc.channel_ready_future(self._channel).result(timeout=timeout)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> LoopClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
