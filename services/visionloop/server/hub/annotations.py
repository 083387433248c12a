"""Human annotations and model detections per image (kept apart); dataset import and export."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Sequence

import grpc
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from visionloop.common.v1 import transfer_pb2
from visionloop.lib.storage import CHUNK_BYTES
from visionloop.loop.v1 import annotation_service_pb2 as pb
from visionloop.loop.v1 import annotation_service_pb2_grpc
from visionloop.runtime.errors import InvalidArgument, NotFound, ResourceExhausted
from visionloop.runtime.tasks import settled
from visionloop.server.hub import blob_fence, datasets
from visionloop.server.hub.db import schema
from visionloop.server.hub.images import clean_tags, discard_blobs, get_image
from visionloop.server.hub.labels import (
    add_annotation,
    annotation_message,
    check_shape,
    get_detections,
    list_annotations,
    put_detections,
    resolve_category,
)
from visionloop.server.hub.state import Hub, check_ref, get_project, utcnow
from visionloop.server.hub.transfer import check_sha256, receive_chunks


def _annotation_row(
    session: Session, project: schema.Project, annotation_id: str
) -> tuple[schema.Annotation, schema.Image]:
    found = session.execute(
        select(schema.Annotation, schema.Image)
        .join(schema.Image, schema.Image.pk == schema.Annotation.image_pk)
        .where(schema.Annotation.id == annotation_id, schema.Image.project_pk == project.pk)
    ).one_or_none()
    if found is None:
        raise NotFound(f"annotation {annotation_id!r} does not exist in {project.organization}/{project.name}")
    return found[0], found[1]


def _check_import_header(header: pb.ImportDatasetHeader) -> None:
    check_ref(header.ref)
    datasets.format_name(header.format)
    size = header.blob.size_bytes
    if size <= 0:
        raise InvalidArgument("header.blob.size_bytes must be the zip's size in bytes")
    if size > datasets.MAX_DATASET_BYTES:
        raise ResourceExhausted(f"the dataset zip has {size} bytes; at most {datasets.MAX_DATASET_BYTES} are accepted")
    check_sha256(header.blob.sha256)


class AnnotationServicer(annotation_service_pb2_grpc.AnnotationServiceServicer):
    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    async def CreateAnnotation(
        self, request: pb.CreateAnnotationRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateAnnotationResponse:
        annotation = request.annotation
        if not annotation.image_id:
            raise InvalidArgument("annotation.image_id is required")

        def create(session: Session) -> pb.CreateAnnotationResponse:
            project = get_project(session, request.ref)
            image = get_image(session, project, annotation.image_id)
            row = add_annotation(session, project, image, annotation)
            session.flush()
            category = session.get(schema.Category, row.category_id)
            assert category is not None
            return pb.CreateAnnotationResponse(annotation=annotation_message(row, image.sha256, category.name))

        return await self.hub.db.write(create)

    async def UpdateAnnotation(
        self, request: pb.UpdateAnnotationRequest, context: grpc.aio.ServicerContext
    ) -> pb.UpdateAnnotationResponse:
        annotation = request.annotation
        if not annotation.id:
            raise InvalidArgument("annotation.id is required")

        def update(session: Session) -> pb.UpdateAnnotationResponse:
            project = get_project(session, request.ref)
            row, image = _annotation_row(session, project, annotation.id)
            if annotation.category_id or annotation.category_name:
                category = resolve_category(session, project, annotation.category_id, annotation.category_name)
            else:
                stored = session.get(schema.Category, row.category_id)
                assert stored is not None
                category = stored
            shape = annotation.shape if annotation.HasField("shape") else type(annotation.shape).FromString(row.shape)
            check_shape(shape, category, image)
            row.category_id = category.id
            row.shape = shape.SerializeToString()
            if annotation.HasField("shape"):  # crowd describes the shape: it changes with it
                row.crowd = annotation.crowd
            row.update_time = utcnow()
            if annotation.creator.WhichOneof("kind"):
                row.creator_person = annotation.creator.person
                row.creator_model_version = annotation.creator.model_version
            return pb.UpdateAnnotationResponse(annotation=annotation_message(row, image.sha256, category.name))

        return await self.hub.db.write(update)

    async def DeleteAnnotation(
        self, request: pb.DeleteAnnotationRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeleteAnnotationResponse:
        def delete(session: Session) -> None:
            project = get_project(session, request.ref)
            row, image = _annotation_row(session, project, request.annotation_id)
            session.delete(row)
            image.annotation_count = max(0, image.annotation_count - 1)

        await self.hub.db.write(delete)
        return pb.DeleteAnnotationResponse()

    async def ListAnnotations(
        self, request: pb.ListAnnotationsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListAnnotationsResponse:
        def read(session: Session) -> pb.ListAnnotationsResponse:
            project = get_project(session, request.ref)
            return pb.ListAnnotationsResponse(
                annotations=list_annotations(session, get_image(session, project, request.image_id))
            )

        return await self.hub.db.read(read)

    async def PutDetections(
        self, request: pb.PutDetectionsRequest, context: grpc.aio.ServicerContext
    ) -> pb.PutDetectionsResponse:
        def put(session: Session) -> int:
            project = get_project(session, request.ref)
            return put_detections(session, get_image(session, project, request.image_id), request.detections)

        return pb.PutDetectionsResponse(stored=await self.hub.db.write(put))

    async def GetDetections(
        self, request: pb.GetDetectionsRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetDetectionsResponse:
        def read(session: Session) -> pb.GetDetectionsResponse:
            project = get_project(session, request.ref)
            image = get_image(session, project, request.image_id)
            return pb.GetDetectionsResponse(detections=get_detections(session, image, request.model_version))

        return await self.hub.db.read(read)

    async def ImportDataset(
        self, request_iterator: AsyncIterator[pb.ImportDatasetRequest], context: grpc.aio.ServicerContext
    ) -> pb.ImportDatasetResponse:
        first = await anext(aiter(request_iterator), None)
        if first is None or first.WhichOneof("part") != "header":
            raise InvalidArgument("the first ImportDataset message must be the header")
        header = first.header
        _check_import_header(header)
        tags = clean_tags(header.tags)
        await self.hub.db.read(lambda s: get_project(s, header.ref))  # fail fast, before any bytes move
        spool = self.hub.spool_file()
        try:
            await receive_chunks(request_iterator, header.blob, spool, "dataset zip")
            archive = await asyncio.to_thread(datasets.Archive.open, spool)
            try:
                return await self._import(header, tags, archive)
            finally:
                archive.close()
        finally:
            await asyncio.to_thread(spool.unlink, True)

    async def _import(
        self, header: pb.ImportDatasetHeader, tags: Sequence[str], archive: datasets.Archive
    ) -> pb.ImportDatasetResponse:
        hub = self.hub
        dataset = await asyncio.to_thread(datasets.read_dataset, archive, header.format)
        prepared = await asyncio.to_thread(
            datasets.prepare, archive, dataset, hub.max_image_bytes, hub.max_image_pixels
        )
        targets, created = await self._ensure_categories(header, dataset.categories, dataset.outlined)
        datasets.to_shapes(prepared, targets)
        response = pb.ImportDatasetResponse(
            images_duplicate=prepared.duplicates,
            images_skipped=prepared.skipped,
            categories_added=created,
            warnings=prepared.warnings,
        )
        for batch in datasets.batches(prepared.images):
            recorded = await self._store_batch(header, archive, batch, tags, dataset.source)
            response.images_added += recorded.added
            response.images_duplicate += recorded.duplicates
            response.annotations_added += recorded.annotations
            if recorded.added:
                hub.events.notify()
        return response

    async def _ensure_categories(
        self, header: pb.ImportDatasetHeader, names: Sequence[str], outlined: Iterable[str]
    ) -> tuple[dict[str, datasets.Target], int]:
        def ensure(session: Session) -> tuple[dict[str, datasets.Target], int]:
            return datasets.ensure_categories(session, header.ref, names, outlined)

        try:
            return await self.hub.db.write(ensure)
        except IntegrityError:  # someone created one of them a moment ago: use it
            return await self.hub.db.write(ensure)

    async def _store_batch(
        self,
        header: pb.ImportDatasetHeader,
        archive: datasets.Archive,
        batch: Sequence[datasets.Prepared],
        tags: Sequence[str],
        source: str,
    ) -> datasets.Recorded:
        """Blobs first, then rows (as ``store_image``): a failed batch leaves no orphan blob. Like
        uploads, it takes its turn on each of its images' bytes (see ``store_image``)."""
        hub = self.hub
        swept_seq = hub.swept_seq if hub.fenced else None  # before the puts: another replica may sweep
        async with hub.blob_locks.hold_all(p.sha256 for p in batch):
            stored = await hub.db.read(lambda s: datasets.stored_images(s, batch))
            try:
                created = await asyncio.to_thread(datasets.put_blobs, archive, batch, hub.store, stored)
            except Exception:  # e.g. the disk filled up half-way: the blobs put so far have no row
                await discard_blobs(hub, [p.sha256 for p in batch if p.sha256 not in stored])
                raise

            async def commit(swept_seq: int | None) -> datasets.Recorded:
                def record(session: Session) -> datasets.Recorded:
                    if swept_seq is not None:
                        blob_fence.check(session, [(sha256, swept_seq) for sha256 in created])
                    return datasets.record_batch(session, header.ref, batch, tags, source)

                try:
                    return await settled(hub.db.write(record))
                except IntegrityError:  # some of the bytes arrived concurrently: merge into those rows
                    return await settled(hub.db.write(record))

            async def put_again(hashes: Sequence[str]) -> None:
                again = [p for p in batch if p.sha256 in hashes]
                await asyncio.to_thread(datasets.put_blobs, archive, again, hub.store, set())

            try:
                return await blob_fence.committed(hub, swept_seq, commit, put_again)
            except Exception:
                # Not on cancellation: the transaction may have committed and reference the blobs.
                await discard_blobs(hub, created)
                raise

    async def ExportDataset(
        self, request: pb.ExportDatasetRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.ExportDatasetResponse]:
        name = datasets.format_name(request.format)
        check_ref(request.ref)
        snapshot = await self.hub.db.read(lambda s: datasets.snapshot(s, request.ref))
        spool = self.hub.spool_file()
        try:
            sha256, size = await asyncio.to_thread(
                datasets.write_export, spool, snapshot, request.format, self.hub.store
            )
            yield pb.ExportDatasetResponse(
                header=transfer_pb2.BlobHeader(
                    name=f"{request.ref.organization}-{request.ref.project}-{name}.zip",
                    content_type="application/zip",
                    size_bytes=size,
                    sha256=sha256,
                )
            )
            handle = await asyncio.to_thread(spool.open, "rb")
            try:
                offset = 0
                while data := await asyncio.to_thread(handle.read, CHUNK_BYTES):
                    yield pb.ExportDatasetResponse(chunk=transfer_pb2.BlobChunk(offset=offset, data=data))
                    offset += len(data)
            finally:
                handle.close()
        finally:
            await asyncio.to_thread(spool.unlink, True)
