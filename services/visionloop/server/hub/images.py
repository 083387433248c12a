"""Images: validated by decoding, deduplicated by content hash, queried with keyset pagination.

A blob is content-addressed (``images/<sha256>``), written before its row and removed again if
the row cannot be written, so a failed upload leaves neither a row nor an orphan blob.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import functools
import hashlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import grpc
from sqlalchemy import BigInteger, Row, and_, any_, bindparam, exists, or_, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from visionloop.common.v1 import annotation_pb2, detection_pb2, image_pb2, transfer_pb2
from visionloop.lib.images import Limits, TooManyBytes, validate
from visionloop.lib.storage import CHUNK_BYTES, ObjectStore
from visionloop.loop.v1 import event_service_pb2, image_service_pb2_grpc, project_service_pb2
from visionloop.loop.v1 import image_service_pb2 as pb
from visionloop.runtime.errors import DataLoss, InvalidArgument, NotFound, ServiceError
from visionloop.runtime.resources import report, shortage_of
from visionloop.runtime.tasks import cancel_and_wait, settled
from visionloop.server.hub import blob_fence
from visionloop.server.hub.db import schema
from visionloop.server.hub.labels import add_annotation, get_detections, list_annotations, put_detections
from visionloop.server.hub.protos import from_timestamp, to_timestamp
from visionloop.server.hub.state import AnyProject, EventBus, Hub, check_ref, get_project, project_key, utcnow

DEFAULT_PAGE = 100
MAX_PAGE = 1000
MAX_TAGS = 64
# Rows per multi-row INSERT of images: psycopg caches its parse of a statement with at most 50
# parameters (14 per image row); re-parsing a longer one on every group cost more than it saved.
ROWS_PER_INSERT = 3
# Images of one UploadImages stream being stored at once, and the most bytes they may hold.
STREAM_WINDOW = 8
STREAM_WINDOW_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class DecodedImage:
    data: bytes
    sha256: str
    width: int
    height: int
    content_type: str


def decode_image(data: bytes, max_bytes: int, max_pixels: int, sha256: str | None = None) -> DecodedImage:
    """Prove the bytes a complete JPEG or PNG within the limits (blocking; ``visionloop.lib.images``'s rules).

    The width and height recorded are the upright picture's, as every consumer decodes it.
    ``sha256`` is the bytes' hex digest when the caller has computed it already.
    """
    info = validate(data, Limits(max_bytes, max_pixels))
    digest = sha256 or hashlib.sha256(data).hexdigest()
    return DecodedImage(data, digest, info.width, info.height, info.content_type)


def check_and_decode(data: bytes, expected_sha256: str, sequence: int, max_bytes: int, max_pixels: int) -> DecodedImage:
    """A streamed image: DATA_LOSS unless it hashes to ``expected_sha256`` (if given), then decode (blocking).

    One thread hop and one hash for both checks; the hash comes first so a corrupted transfer is
    reported as DATA_LOSS rather than as an undecodable image.
    """
    digest = hashlib.sha256(data).hexdigest()
    if expected_sha256 and digest != expected_sha256.lower():
        raise DataLoss(f"image {sequence}: sha256 is {digest}, header announced {expected_sha256}")
    return decode_image(data, max_bytes, max_pixels, digest)


def image_key(sha256: str) -> str:
    return f"images/{sha256[:2]}/{sha256}"


# PostgreSQL gets a page's image keys as one array: psycopg re-parses, and never prepares, a
# statement with more than 50 parameters, and IN (...) over a page of 100 has 100.
_PAGE_PKS = bindparam("image_pks", type_=postgresql.ARRAY(BigInteger))


def _tags(session: Session, image_pks: Sequence[int]) -> dict[int, list[str]]:
    """Each image's tags, sorted."""
    tags: dict[int, list[str]] = {pk: [] for pk in image_pks}
    if image_pks:
        column = schema.ImageTag.image_pk
        postgres = session.get_bind().dialect.name == "postgresql"
        rows = session.execute(
            select(column, schema.ImageTag.tag)
            .where(column == any_(_PAGE_PKS) if postgres else column.in_(image_pks))
            .order_by(schema.ImageTag.tag),
            {"image_pks": list(image_pks)} if postgres else {},
        )
        for pk, tag in rows:
            tags[pk].append(tag)
    return tags


# What a page of ListImages reads per image: the columns image_message needs, as plain rows.
# Loading ORM objects instead (identity map, instance state) cost more than the page's SQL.
_MESSAGE_COLUMNS = (
    schema.Image.pk,
    schema.Image.sha256,
    schema.Image.camera_id,
    schema.Image.source,
    schema.Image.create_time,
    schema.Image.upload_time,
    schema.Image.state,
    schema.Image.width,
    schema.Image.height,
    schema.Image.content_type,
    schema.Image.size_bytes,
    schema.Image.priority,
    schema.Image.annotation_count,
    schema.Image.detection_count,
)


def image_message(
    row: schema.Image | Row[*tuple[Any, ...]], project: AnyProject, tags: list[str]
) -> image_pb2.ImageMetadata:
    """An image's metadata from its ORM object or a row of ``_MESSAGE_COLUMNS``."""
    return image_pb2.ImageMetadata(
        id=row.sha256,
        project=project.name,
        tags=tags,
        camera_id=row.camera_id,
        source=row.source,
        create_time=to_timestamp(row.create_time),
        upload_time=to_timestamp(row.upload_time),
        state=row.state,  # type: ignore[arg-type]
        width=row.width,
        height=row.height,
        content_type=row.content_type,
        size_bytes=row.size_bytes,
        priority=row.priority,
        annotation_count=row.annotation_count,
        detection_count=row.detection_count,
    )


def _new_image_message(values: dict[str, Any], project: AnyProject, tags: list[str]) -> image_pb2.ImageMetadata:
    """``image_message`` of a row just inserted with ``values``, without building an ORM object for it."""
    return image_pb2.ImageMetadata(
        id=values["sha256"],
        project=project.name,
        tags=tags,
        camera_id=values["camera_id"],
        source=values["source"],
        create_time=to_timestamp(values["create_time"]),
        upload_time=to_timestamp(values["upload_time"]),
        state=values["state"],
        width=values["width"],
        height=values["height"],
        content_type=values["content_type"],
        size_bytes=values["size_bytes"],
        priority=values["priority"],
        annotation_count=values["annotation_count"],
        detection_count=values["detection_count"],
    )


def clean_tags(tags: Sequence[str]) -> list[str]:
    cleaned = sorted({t.strip() for t in tags if t.strip()})
    if len(cleaned) > MAX_TAGS:
        raise InvalidArgument(f"at most {MAX_TAGS} tags per image, got {len(cleaned)}")
    for tag in cleaned:
        if len(tag) > 128:
            raise InvalidArgument(f"tag {tag[:20]!r}... is longer than 128 characters")
    return cleaned


def get_image(session: Session, project: schema.Project, image_id: str) -> schema.Image:
    row = session.scalars(
        select(schema.Image).where(schema.Image.project_pk == project.pk, schema.Image.sha256 == image_id)
    ).one_or_none()
    if row is None:
        raise NotFound(f"image {image_id!r} does not exist in {project.organization}/{project.name}")
    return row


@dataclass(frozen=True)
class Stored:
    metadata: image_pb2.ImageMetadata
    duplicate: bool


_STATEMENTS: dict[str, tuple[Any, Any, Any]] = {}


def _statements(dialect: str) -> tuple[Any, Any, Any]:
    """INSERT ... ON CONFLICT DO NOTHING for images (returning the pk; for many, the key too) and
    tags, built once per dialect."""
    if dialect not in _STATEMENTS:
        insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
        image = insert(schema.Image).on_conflict_do_nothing(index_elements=["project_pk", "sha256"])
        _STATEMENTS[dialect] = (
            image.returning(schema.Image.pk),
            image.returning(schema.Image.pk, schema.Image.project_pk, schema.Image.sha256).execution_options(
                insertmanyvalues_page_size=ROWS_PER_INSERT
            ),
            insert(schema.ImageTag).on_conflict_do_nothing(),
        )
    return _STATEMENTS[dialect]


def _image_values(project: AnyProject, image: DecodedImage, metadata: image_pb2.ImageMetadata) -> dict[str, Any]:
    return {
        "project_pk": project.pk,
        "sha256": image.sha256,
        "camera_id": metadata.camera_id[:128],
        "source": metadata.source[:256],
        "create_time": from_timestamp(metadata.create_time),
        "upload_time": utcnow(),
        "state": metadata.state or image_pb2.IMAGE_STATE_INBOX,
        "width": image.width,
        "height": image.height,
        "content_type": image.content_type,
        "size_bytes": len(image.data),
        "priority": metadata.priority,
        "annotation_count": 0,
        "detection_count": 0,
    }


def _existing_pk(session: Session, project: AnyProject, sha256: str) -> int:
    pk = session.scalar(
        select(schema.Image.pk).where(schema.Image.project_pk == project.pk, schema.Image.sha256 == sha256)
    )
    assert pk is not None, "a conflicting insert means the row exists"
    return pk


def _stored_row(session: Session, project: AnyProject, pk: int, duplicate: bool) -> Stored:
    """The image as the database has it now (merged tags and labels included)."""
    session.flush()
    row = session.get(schema.Image, pk)
    assert row is not None
    return Stored(image_message(row, project, _tags(session, [row.pk])[row.pk]), duplicate)


def _record(
    session: Session,
    ref: project_service_pb2.ProjectRef,
    image: DecodedImage,
    metadata: image_pb2.ImageMetadata,
    annotations: Sequence[annotation_pb2.Annotation],
    detections: detection_pb2.Detections,
    swept_seq: int | None = None,
) -> Stored:
    """Insert the image (or find the existing one) and merge tags and labels.

    For uploads with labels (the detector's frames carry detections); ``NewImage`` records the
    others. Plain INSERT ... ON CONFLICT statements rather than ORM objects: the ORM's bookkeeping
    costs more than the SQL here. ``swept_seq``: see ``NewImage``.
    """
    if swept_seq is not None:
        blob_fence.check(session, [(image.sha256, swept_seq)])
    project = project_key(session, ref)
    tags = clean_tags(metadata.tags)
    insert_image, _, insert_tags = _statements(session.get_bind().dialect.name)
    connection = session.connection()
    inserted = connection.execute(insert_image, _image_values(project, image, metadata)).scalar()
    duplicate = inserted is None
    pk: int = _existing_pk(session, project, image.sha256) if inserted is None else inserted
    if tags:
        connection.execute(insert_tags, [{"image_pk": pk, "tag": tag} for tag in tags])
    row = session.get(schema.Image, pk)
    assert row is not None
    for annotation in annotations:
        add_annotation(session, project, row, annotation)
    if any(detections.ListFields()):
        put_detections(session, row, detections)
    if not duplicate:  # last: on PostgreSQL the event lock is then held only until the commit
        EventBus.append(session, event_service_pb2.EVENT_TYPE_IMAGE_ADDED, project, image.sha256)
    return _stored_row(session, project, pk, duplicate)


@dataclass(frozen=True)
class NewImage:
    """An upload without labels: group commit records these together, a few statements per group."""

    ref: project_service_pb2.ProjectRef
    image: DecodedImage
    metadata: image_pb2.ImageMetadata
    # With several hub replicas: the sweep's log as read before the put (see blob_fence.check).
    swept_seq: int | None = None

    def __call__(self, session: Session) -> Stored:
        return self.run_together(session, [self])[0]

    @staticmethod
    def run_together(session: Session, items: Sequence[NewImage]) -> list[Stored]:
        """Insert the images, their tags and their events with one statement each.

        An image already stored (or twice in the group) is merged as ``_record`` merges it. Per
        row, SQLAlchemy costs more than PostgreSQL does, so a group of uploads pays it once per
        statement rather than once per image and statement.
        """
        blob_fence.check(session, [(item.image.sha256, item.swept_seq) for item in items if item.swept_seq is not None])
        _, insert_images, insert_tags = _statements(session.get_bind().dialect.name)
        projects = [project_key(session, item.ref) for item in items]
        tags = [clean_tags(item.metadata.tags) for item in items]
        values = [_image_values(p, item.image, item.metadata) for p, item in zip(projects, items, strict=True)]
        connection = session.connection()
        inserted = {(project_pk, sha256): pk for pk, project_pk, sha256 in connection.execute(insert_images, values)}
        pks: list[int] = []
        fresh: list[bool] = []
        for project, item in zip(projects, items, strict=True):
            pk = inserted.pop((project.pk, item.image.sha256), None)  # popped: a second copy is a duplicate
            fresh.append(pk is not None)
            pks.append(pk if pk is not None else _existing_pk(session, project, item.image.sha256))
        rows = [{"image_pk": pk, "tag": tag} for pk, image_tags in zip(pks, tags, strict=True) for tag in image_tags]
        if rows:
            connection.execute(insert_tags, rows)
        # Last: on PostgreSQL the event lock is then held only until the commit.
        EventBus.append_many(
            session,
            [
                (event_service_pb2.EVENT_TYPE_IMAGE_ADDED, project, item.image.sha256, "")
                for project, item, new in zip(projects, items, fresh, strict=True)
                if new
            ],
        )
        # A new row is exactly what was inserted: no need to read it back (nor an ORM object).
        return [
            Stored(_new_image_message(row, project, image_tags), False)
            if new
            else _stored_row(session, project, pk, duplicate=True)
            for row, project, image_tags, pk, new in zip(values, projects, tags, pks, fresh, strict=True)
        ]


async def store_image(
    hub: Hub,
    ref: project_service_pb2.ProjectRef,
    data: bytes,
    metadata: image_pb2.ImageMetadata,
    annotations: Sequence[annotation_pb2.Annotation] = (),
    detections: detection_pb2.Detections | None = None,
    validate: Callable[[bytes], DecodedImage] | None = None,
) -> Stored:
    """Validate, store the blob, record the row (or merge into the existing one).

    ``validate`` (blocking) proves the bytes an image; by default ``decode_image`` with the hub's
    limits. It and the put run in one blob-worker call.
    """
    check_ref(ref)  # here, in the call's context: the row is recorded by group commit
    deletions = hub.blob_deletions
    swept_seq = hub.swept_seq if hub.fenced else None  # before the put: another replica may sweep
    image = await hub.in_blob_worker(
        _validated_and_put,
        hub.store,
        data,
        validate or functools.partial(decode_image, max_bytes=hub.max_image_bytes, max_pixels=hub.max_image_pixels),
    )
    # Uploads of the same bytes take turns from here to their commit: a failed one removes the
    # blob unless a row references it, and a concurrent upload of the same bytes whose row is not
    # committed yet would lose its blob. Taking turns, the second finds the first's row and merges.
    # The put came before the turn (one thread hop instead of two), so if any blob was deleted
    # since (a failed upload's, the sweep's), it may have been these bytes: put them again.
    async with hub.blob_locks.hold(image.sha256):
        if hub.blob_deletions != deletions:
            await hub.in_blob_worker(hub.store.put_bytes, image_key(image.sha256), image.data)
        stored = await _record_stored(
            hub, ref, image, metadata, annotations, detections or detection_pb2.Detections(), swept_seq
        )
    if not stored.duplicate:
        hub.events.notify()
    return stored


def _validated_and_put(store: ObjectStore, data: bytes, validate: Callable[[bytes], DecodedImage]) -> DecodedImage:
    """Validate, then put (blocking). Even bytes the hub may have already: a content-addressed put
    is idempotent, and asking the database first cost every new image a query (a fifth of the
    hub's CPU per upload) to save the rare duplicate one put."""
    image = validate(data)
    store.put_bytes(image_key(image.sha256), image.data)
    return image


async def _record_stored(
    hub: Hub,
    ref: project_service_pb2.ProjectRef,
    image: DecodedImage,
    metadata: image_pb2.ImageMetadata,
    annotations: Sequence[annotation_pb2.Annotation],
    labels: detection_pb2.Detections,
    swept_seq: int | None,
) -> Stored:
    """The row of an image whose blob is stored; if it cannot be written, the blob is discarded."""
    labelled = bool(annotations) or any(labels.ListFields())

    async def commit(swept_seq: int | None) -> Stored:
        record: Callable[[Session], Stored] = (
            functools.partial(
                _record,
                ref=ref,
                image=image,
                metadata=metadata,
                annotations=annotations,
                detections=labels,
                swept_seq=swept_seq,
            )
            if labelled
            else NewImage(ref, image, metadata, swept_seq)
        )
        try:
            return await settled(hub.db.write_grouped(record))
        except IntegrityError:  # the same bytes arrived concurrently at another replica: merge into its row
            return await settled(hub.db.write_grouped(record))

    async def put_again(_: Sequence[str]) -> None:
        await hub.in_blob_worker(hub.store.put_bytes, image_key(image.sha256), image.data)

    try:
        return await blob_fence.committed(hub, swept_seq, commit, put_again)
    except Exception:
        # Not on cancellation (a client's deadline, a disconnect): ``settled`` waited for the group
        # commit, which may have committed the row anyway, and a row without its blob would be
        # lost data; a blob without a row is only garbage (the sweep collects it).
        await discard_blobs(hub, [image.sha256])
        raise


def referenced_hashes(session: Session, hashes: Sequence[str]) -> set[str]:
    """Of ``hashes``, those an image row of any project references."""
    return set(session.scalars(select(schema.Image.sha256).where(schema.Image.sha256.in_(hashes)).distinct()))


async def discard_blobs(hub: Hub, hashes: Sequence[str]) -> None:
    """After a failed write, delete the blobs of ``hashes`` that no image row references.

    The caller holds the hashes' per-hash locks, which keep this process's uploads of the same
    bytes away, but not another replica's: one may have put the same bytes and not committed its
    row yet. With several replicas the blobs are left to the sweep, which deletes only blobs
    nobody wrote during its grace period.
    """
    if hub.settings.hub_replicas > 1 or not hashes:
        return
    referenced = await hub.db.read(lambda s: referenced_hashes(s, hashes))
    for sha256 in hashes:
        if sha256 not in referenced:
            await hub.delete_blob(image_key(sha256))


def _encode_token(order: int, value: str, pk: int) -> str:
    return base64.urlsafe_b64encode(json.dumps([order, value, pk]).encode()).decode()


def _decode_token(token: str, order: int) -> tuple[str, int]:
    try:
        token_order, value, pk = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (ValueError, binascii.Error, TypeError):
        raise InvalidArgument("page_token is not a token this hub issued") from None
    if token_order != order:
        raise InvalidArgument("page_token belongs to a query with a different order")
    return str(value), int(pk)


def _page_size(value: int, default: int = DEFAULT_PAGE) -> int:
    if value < 0 or value > MAX_PAGE:
        raise InvalidArgument(f"page_size must be between 1 and {MAX_PAGE}, got {value}")
    return value or default


class StreamWindow:
    """The images of one UploadImages stream being stored at once, oldest first.

    Bounded in images and in bytes. An image waits for an earlier one with the same announced
    sha256, so the first of two copies in a stream is stored and the second is its duplicate, as
    when they are sent one after the other.
    """

    def __init__(self, images: int, max_bytes: int) -> None:
        self._images = images
        self._max_bytes = max_bytes
        self._held = 0
        self._items: collections.deque[tuple[asyncio.Task[pb.UploadImagesResponse], int, str]] = collections.deque()

    def __len__(self) -> int:
        return len(self._items)

    def must_wait(self, size: int, sha256: str) -> bool:
        """Whether an image of ``size`` bytes must wait for the oldest before it starts."""
        return bool(self._items) and (
            len(self._items) >= self._images
            or self._held + size > self._max_bytes
            or (bool(sha256) and any(other == sha256 for _, _, other in self._items))
        )

    def start(self, store: Awaitable[pb.UploadImagesResponse], size: int, sha256: str) -> None:
        self._items.append((asyncio.ensure_future(store), size, sha256))
        self._held += size

    def oldest_done(self) -> bool:
        return bool(self._items) and self._items[0][0].done()

    async def oldest(self) -> pb.UploadImagesResponse:
        """The oldest image's answer, once it is stored (or refused)."""
        task, size, _ = self._items[0]
        try:
            return await task
        finally:
            if task.done():  # not if this wait was cancelled: ``close`` waits for it to end
                self._items.popleft()
                self._held -= size

    async def close(self) -> None:
        """Cancel what is still being stored and wait until it has ended."""
        await cancel_and_wait(task for task, _, _ in self._items)
        self._items.clear()


async def _refused(header: pb.ImageHeader, error: ServiceError) -> pb.UploadImagesResponse:
    """The answer to a streamed image that is not stored (a coroutine: it takes its turn in the window)."""
    return pb.UploadImagesResponse(
        sequence=header.sequence, error_code=error.code.value[0], error_message=error.message
    )


class ImageServicer(image_service_pb2_grpc.ImageServiceServicer):
    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    async def UploadImage(
        self, request: pb.UploadImageRequest, context: grpc.aio.ServicerContext
    ) -> pb.UploadImageResponse:
        upload = request.image
        stored = await store_image(
            self.hub, request.ref, upload.data, upload.metadata, upload.annotations, upload.detections
        )
        return pb.UploadImageResponse(metadata=stored.metadata, duplicate=stored.duplicate)

    async def UploadImages(
        self, request_iterator: AsyncIterator[pb.UploadImagesRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.UploadImagesResponse]:
        """Images are stored while later ones arrive, up to a window per stream; answers go in order.

        One at a time, a stream waited for each image's put and commit before reading the next:
        a robot streaming a folder kept one image in flight. The window is bounded in images and
        in bytes, and reading stops while it is full, so gRPC flow control holds the client back.
        """
        ref: project_service_pb2.ProjectRef | None = None
        header: pb.ImageHeader | None = None
        buffer = bytearray()
        received = 0  # bytes of the current image, kept in ``buffer`` unless it is refused
        refusal: ServiceError | None = None  # why the current image is refused before its bytes arrive
        window = StreamWindow(STREAM_WINDOW, STREAM_WINDOW_BYTES)

        async def admit() -> AsyncIterator[pb.UploadImagesResponse]:
            """Start storing the image just received, after answering the ones it must wait for."""
            assert ref is not None
            assert header is not None
            sha256 = header.blob.sha256.lower()
            if refusal is not None:  # answered in its turn; its bytes were not kept
                while window.must_wait(0, ""):
                    yield await window.oldest()
                window.start(_refused(header, refusal), 0, "")
                return
            while window.must_wait(len(buffer), sha256):
                yield await window.oldest()
            window.start(self._store_streamed(ref, header, bytes(buffer)), len(buffer), sha256)

        try:
            try:
                async for message in request_iterator:
                    if ref is None:
                        if not message.HasField("ref"):
                            raise InvalidArgument(
                                "the first UploadImagesRequest must carry ref (organization, project)"
                            )
                        ref = message.ref
                        check_ref(ref)  # a token limited to another project stops before any bytes
                    part = message.WhichOneof("part")
                    if part == "header":
                        if header is not None:
                            async for answer in admit():
                                yield answer
                        while window.oldest_done():
                            yield await window.oldest()
                        header, buffer, received, refusal = message.header, bytearray(), 0, None
                        if header.blob.size_bytes > self.hub.max_image_bytes:
                            refusal = TooManyBytes(
                                f"image {header.sequence} announces {header.blob.size_bytes} bytes; "
                                f"the limit is {self.hub.max_image_bytes} bytes"
                            )
                    elif part == "chunk":
                        if header is None:
                            raise InvalidArgument("a chunk arrived before any ImageHeader")
                        if message.chunk.offset != received:
                            raise InvalidArgument(
                                f"image {header.sequence}: chunk offset {message.chunk.offset}, expected {received}"
                            )
                        received += len(message.chunk.data)
                        if received > header.blob.size_bytes:
                            raise InvalidArgument(
                                f"image {header.sequence}: more bytes than the {header.blob.size_bytes} announced"
                            )
                        if refusal is None:
                            buffer.extend(message.chunk.data)
            except ServiceError:  # a malformed stream: first the answers for the images it did deliver
                while window:
                    yield await window.oldest()
                raise
            if header is not None:
                async for answer in admit():
                    yield answer
            while window:
                yield await window.oldest()
        finally:  # the client went away or an image failed unexpectedly: stop the rest
            await window.close()

    async def _store_streamed(
        self, ref: project_service_pb2.ProjectRef, header: pb.ImageHeader, data: bytes
    ) -> pb.UploadImagesResponse:
        """One image of an UploadImages stream: its answer, refusals included."""
        blob = header.blob
        hub = self.hub
        try:
            if len(data) != blob.size_bytes:
                raise InvalidArgument(
                    f"image {header.sequence}: got {len(data)} bytes, header announced {blob.size_bytes}"
                )
            stored = await store_image(
                hub,
                ref,
                data,
                header.metadata,
                header.annotations,
                header.detections,
                functools.partial(
                    check_and_decode,
                    expected_sha256=blob.sha256,
                    sequence=header.sequence,
                    max_bytes=hub.max_image_bytes,
                    max_pixels=hub.max_image_pixels,
                ),
            )
        except ServiceError as error:
            return await _refused(header, error)
        except Exception as error:  # a full disk refuses this image, not the stream (nothing of it is kept)
            if (shortage := shortage_of(error)) is None:
                raise
            report(shortage, error)
            return pb.UploadImagesResponse(
                sequence=header.sequence,
                error_code=shortage.code.value[0],
                error_message=shortage.message,
                retry_later=shortage.retry_later,
            )
        return pb.UploadImagesResponse(sequence=header.sequence, metadata=stored.metadata, duplicate=stored.duplicate)

    async def GetImage(self, request: pb.GetImageRequest, context: grpc.aio.ServicerContext) -> pb.GetImageResponse:
        def read(session: Session) -> pb.GetImageResponse:
            project = get_project(session, request.ref)
            row = get_image(session, project, request.image_id)
            response = pb.GetImageResponse(metadata=image_message(row, project, _tags(session, [row.pk])[row.pk]))
            if request.include_labels:
                response.annotations.extend(list_annotations(session, row))
                response.detections.CopyFrom(get_detections(session, row))
            return response

        return await self.hub.db.read(read)

    async def ListImages(
        self, request: pb.ListImagesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListImagesResponse:
        size = _page_size(request.page_size)
        order = request.order or pb.IMAGE_ORDER_NEWEST
        after = _decode_token(request.page_token, order) if request.page_token else None
        images, token = await self.hub.db.read(
            lambda s: self._query(s, request.ref, request.filter, order, size, after)
        )
        return pb.ListImagesResponse(images=images, next_page_token=token)

    def _query(
        self,
        session: Session,
        ref: project_service_pb2.ProjectRef,
        filter_: pb.ImageFilter,
        order: int,
        size: int,
        after: tuple[str, int] | None,
    ) -> tuple[list[image_pb2.ImageMetadata], str]:
        project = get_project(session, ref)
        image = schema.Image
        query = select(*_MESSAGE_COLUMNS).where(image.project_pk == project.pk)
        if filter_.states:
            query = query.where(image.state.in_(list(filter_.states)))
        for tag in set(filter_.tags):
            query = query.where(exists().where(schema.ImageTag.image_pk == image.pk, schema.ImageTag.tag == tag))
        if filter_.camera_id:
            query = query.where(image.camera_id == filter_.camera_id)
        if (start := from_timestamp(filter_.upload_time_from)) is not None:
            query = query.where(image.upload_time >= start)
        if (end := from_timestamp(filter_.upload_time_to)) is not None:
            query = query.where(image.upload_time < end)
        if filter_.HasField("has_annotations"):
            count = image.annotation_count
            query = query.where(count > 0 if filter_.has_annotations else count == 0)
        if filter_.HasField("has_detections"):
            count = image.detection_count
            query = query.where(count > 0 if filter_.has_detections else count == 0)

        column = image.priority if order == pb.IMAGE_ORDER_PRIORITY else image.upload_time
        ascending = order == pb.IMAGE_ORDER_OLDEST
        if after is not None:
            raw, pk = after
            value: object = float(raw) if order == pb.IMAGE_ORDER_PRIORITY else datetime.fromisoformat(raw)
            if ascending:
                query = query.where(or_(column > value, and_(column == value, image.pk > pk)))
            else:
                query = query.where(or_(column < value, and_(column == value, image.pk < pk)))
        ordering = (column.asc(), image.pk.asc()) if ascending else (column.desc(), image.pk.desc())
        rows = session.execute(query.order_by(*ordering).limit(size + 1)).all()
        token = ""
        if len(rows) > size:
            rows = rows[:size]
            last = rows[-1]
            value_text = str(last.priority) if order == pb.IMAGE_ORDER_PRIORITY else last.upload_time.isoformat()
            token = _encode_token(order, value_text, last.pk)
        tags = _tags(session, [r.pk for r in rows])
        return [image_message(r, project, tags[r.pk]) for r in rows], token

    async def UpdateImage(
        self, request: pb.UpdateImageRequest, context: grpc.aio.ServicerContext
    ) -> pb.UpdateImageResponse:
        add, remove = clean_tags(request.add_tags), set(clean_tags(request.remove_tags))

        def update(session: Session) -> image_pb2.ImageMetadata:
            project = get_project(session, request.ref)
            row = get_image(session, project, request.image_id)
            current = set(_tags(session, [row.pk])[row.pk])
            session.add_all(schema.ImageTag(image_pk=row.pk, tag=t) for t in add if t not in current)
            for tag in remove & current:
                session.delete(session.get(schema.ImageTag, (row.pk, tag)))
            if request.state:
                row.state = request.state
            if request.HasField("priority"):
                row.priority = request.priority
            session.flush()
            return image_message(row, project, sorted((current | set(add)) - remove))

        return pb.UpdateImageResponse(metadata=await self.hub.db.write(update))

    async def DownloadImages(
        self, request: pb.DownloadImagesRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.DownloadImagesResponse]:
        if len(request.image_ids) > MAX_PAGE:
            raise InvalidArgument(f"at most {MAX_PAGE} images per download, got {len(request.image_ids)}")

        def rows(session: Session) -> list[schema.Image]:
            project = get_project(session, request.ref)
            return [get_image(session, project, image_id) for image_id in request.image_ids]

        for row in await self.hub.db.read(rows):
            yield pb.DownloadImagesResponse(
                header=transfer_pb2.BlobHeader(
                    name=row.sha256, content_type=row.content_type, size_bytes=row.size_bytes, sha256=row.sha256
                )
            )
            data = await asyncio.to_thread(self.hub.store.read_bytes, image_key(row.sha256))
            for offset in range(0, len(data), CHUNK_BYTES):
                yield pb.DownloadImagesResponse(
                    chunk=transfer_pb2.BlobChunk(offset=offset, data=data[offset : offset + CHUNK_BYTES])
                )

    async def ListAnnotationQueue(
        self, request: pb.ListAnnotationQueueRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListAnnotationQueueResponse:
        size = _page_size(request.page_size, 50)
        order = pb.IMAGE_ORDER_PRIORITY
        after = _decode_token(request.page_token, order) if request.page_token else None
        queue_filter = pb.ImageFilter(states=[image_pb2.IMAGE_STATE_ANNOTATE])
        images, token = await self.hub.db.read(lambda s: self._query(s, request.ref, queue_filter, order, size, after))
        return pb.ListAnnotationQueueResponse(images=images, next_page_token=token)
