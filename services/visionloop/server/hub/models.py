"""The model registry: versions, per-format zips, lineage, metrics, conversion jobs.

An upload is spooled to disk, checked (sha256, size, zip safety, model.json), rewritten with the
model.json the hub completes, stored in the object store and only then recorded in the database,
so a row never points at a missing blob. Each stored zip gets its own key: a concurrent upload
that loses the race for a version or format deletes its blob without touching the winner's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import stat
import uuid
import zipfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, cast

import grpc
from sqlalchemy import CursorResult, exists, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from visionloop.common.v1 import model_pb2, transfer_pb2
from visionloop.converter.v1 import converter_service_pb2 as converter_pb
from visionloop.lib.archives import archive_problem, zip_entry_problem
from visionloop.lib.model_format.model_json import (
    HUB_FIELDS,
    MAX_MODEL_JSON_BYTES,
    MODEL_JSON,
    REGISTRY_FIELDS,
    dumps,
    model_info_from_json,
    parse_model_json,
)
from visionloop.lib.storage import BlobNotFound
from visionloop.loop.v1 import event_service_pb2 as events_pb
from visionloop.loop.v1 import model_service_pb2 as pb
from visionloop.loop.v1 import model_service_pb2_grpc
from visionloop.loop.v1 import project_service_pb2 as project_pb
from visionloop.runtime import access
from visionloop.runtime.errors import (
    Aborted,
    AlreadyExists,
    DataLoss,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    OutOfRange,
    ResourceExhausted,
)
from visionloop.server.hub.db import schema
from visionloop.server.hub.deployments import follows_latest
from visionloop.server.hub.model_checks import check_graph
from visionloop.server.hub.promotion import PROMOTED, decide, has_metrics, promotion_of
from visionloop.server.hub.protos import to_timestamp
from visionloop.server.hub.state import EventBus, Hub, check_in_scope, check_ref, get_project, utcnow
from visionloop.server.hub.transfer import check_sha256, hash_file, receive_chunks
from visionloop.server.hub.versions import get_model, next_version, parse_version

GIB = 1024**3
MIB = 1024**2
MAX_MODEL_BYTES = 2 * GIB
MAX_UNCOMPRESSED_BYTES = 4 * GIB
MAX_ENTRIES = 10_000
CHUNK_BYTES = MIB
VERSION_ATTEMPTS = 5  # concurrent uploads racing for the next version retry this often

SOURCE_FORMATS = ("onnx", "pytorch")  # formats a converter starts from, preferred first
MAX_CONVERSION_ATTEMPTS = 3
DEFAULT_LEASE = timedelta(minutes=10)
MAX_LEASE = timedelta(hours=24)

_FORMAT = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")


def _artifacts(session: Session, model_pks: list[int]) -> dict[int, list[schema.ModelArtifact]]:
    """Artifacts per model, in upload order (the first is the version's default format)."""
    grouped: dict[int, list[schema.ModelArtifact]] = {pk: [] for pk in model_pks}
    if model_pks:
        query = (
            select(schema.ModelArtifact)
            .where(schema.ModelArtifact.model_pk.in_(model_pks))
            .order_by(schema.ModelArtifact.create_time, schema.ModelArtifact.format)
        )
        for row in session.scalars(query):
            grouped[row.model_pk].append(row)
    return grouped


# --- zip checks and rewrite (blocking; run in worker threads) ----------------------------------


def check_zip(path: Path) -> dict[str, Any]:
    """Validate an uploaded zip as untrusted input; returns its model.json object."""
    if not zipfile.is_zipfile(path):
        raise InvalidArgument("the upload is not a zip file")
    try:
        with zipfile.ZipFile(path) as archive:
            entries = archive.infolist()
            if (problem := archive_problem(entries, MAX_UNCOMPRESSED_BYTES, MAX_ENTRIES)) is not None:
                raise InvalidArgument(problem)
            names: set[str] = set()
            for info in entries:
                if (problem := zip_entry_problem(info)) is not None:
                    raise InvalidArgument(f"zip entry {info.filename!r} {problem}")
                if info.filename in names:
                    raise InvalidArgument(f"zip entry {info.filename!r} appears twice")
                names.add(info.filename)
            if MODEL_JSON not in names:
                raise InvalidArgument(f"the zip has no {MODEL_JSON} at its top level; add one describing the model")
            if archive.getinfo(MODEL_JSON).file_size > MAX_MODEL_JSON_BYTES:
                raise InvalidArgument(f"{MODEL_JSON} is larger than 1 MiB")
            return parse_model_json(archive.read(MODEL_JSON))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError) as error:
        raise InvalidArgument(f"the zip cannot be read: {error}") from None


def rewrite_zip(source: Path, target: Path, model_json: bytes) -> tuple[str, int]:
    """Copy ``source`` to ``target`` with model.json replaced (first entry); returns sha256 and size.

    Entries are decompressed and recompressed, which also checks their CRCs.
    """
    try:
        with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w", allowZip64=True) as dst:
            manifest = zipfile.ZipInfo(MODEL_JSON, date_time=utcnow().timetuple()[:6])
            manifest.compress_type = zipfile.ZIP_DEFLATED
            manifest.external_attr = (stat.S_IFREG | 0o644) << 16
            dst.writestr(manifest, model_json)
            for info in src.infolist():
                if info.filename == MODEL_JSON:
                    continue
                copy = zipfile.ZipInfo(info.filename, date_time=info.date_time)
                copy.compress_type = info.compress_type
                copy.external_attr = info.external_attr
                copy.comment = info.comment
                if info.is_dir():
                    dst.writestr(copy, b"")
                    continue
                copy.file_size = info.file_size  # lets zipfile choose zip64 up front for big entries
                with src.open(info) as reader, dst.open(copy, "w") as writer:
                    while block := reader.read(CHUNK_BYTES):
                        writer.write(block)
    except (zipfile.BadZipFile, EOFError) as error:  # e.g. a CRC mismatch inside an entry
        raise InvalidArgument(f"the zip cannot be read: {error}") from None
    return hash_file(target)


# --- upload -----------------------------------------------------------------------------------


def check_metrics(metrics: model_pb2.ModelMetrics, where: str) -> None:
    """INVALID_ARGUMENT naming the field for figures no evaluation gives (the promotion gate trusts them)."""
    if not (0.0 <= metrics.map50 <= 1.0 and 0.0 <= metrics.map50_95 <= 1.0) or metrics.image_count < 0:
        raise InvalidArgument(f"{where}.map50 and map50_95 must be within [0, 1] and image_count not negative")
    for item in metrics.classes:
        if min(item.tp, item.fp, item.fn) < 0 or not (0.0 <= item.ap50 <= 1.0 and 0.0 <= item.ap50_95 <= 1.0):
            raise InvalidArgument(f"{where} of category {item.category_name or item.category_id!r} are out of range")
    for baseline in metrics.baselines:
        parse_version(baseline.version, f"{where}.baselines.version")
        if not (0.0 <= baseline.map50 <= 1.0 and 0.0 <= baseline.map50_95 <= 1.0):
            raise InvalidArgument(f"{where}.baselines of {baseline.version}: map50 and map50_95 must be within [0, 1]")


def _check_header(header: pb.UploadModelHeader) -> None:
    check_ref(header.ref)
    if not _FORMAT.match(header.format):
        raise InvalidArgument(
            f"header.format {header.format!r} must be 1-64 characters of a-z, 0-9, '_', '-' and '.', e.g. onnx"
        )
    if header.version:
        parse_version(header.version, "header.version")
        if header.new_major:
            raise InvalidArgument("header.new_major applies to new versions only; leave header.version empty")
    size = header.blob.size_bytes
    if size <= 0:
        raise InvalidArgument("header.blob.size_bytes must be the zip's size in bytes")
    if size > MAX_MODEL_BYTES:
        raise ResourceExhausted(f"the model zip has {size} bytes; the hub accepts at most {MAX_MODEL_BYTES} (2 GiB)")
    check_sha256(header.blob.sha256)


@dataclass(frozen=True)
class _Plan:
    """Where an upload goes, decided before the zip is rewritten."""

    organization: str
    project: str
    major: int
    minor: int
    model_id: str

    @property
    def version(self) -> str:
        return f"{self.major}.{self.minor}"


class _VersionTaken(Exception):
    """Another upload took the planned version first; plan again."""


def _check_format_free(session: Session, model: schema.Model, fmt: str) -> None:
    if session.get(schema.ModelArtifact, (model.pk, fmt)) is not None:
        raise AlreadyExists(f"version {model.version} already has format {fmt!r}")


def _plan(session: Session, header: pb.UploadModelHeader) -> _Plan:
    project = get_project(session, header.ref)
    if header.version:
        model = get_model(session, project, header.version)
        _check_format_free(session, model, header.format)
        return _Plan(project.organization, project.name, model.major, model.minor, model.id)
    major, minor = next_version(session, project.pk, header.new_major)
    return _Plan(project.organization, project.name, major, minor, str(uuid.uuid4()))


def _training_model(
    session: Session, header: pb.UploadModelHeader, training_id: str
) -> model_pb2.ModelInfo | str | None:
    """What a training already published: the artifact in this format, else its version, else None.

    Trainers upload a new version once per training; a resumed upload finds it here instead of
    minting a duplicate version."""
    project = get_project(session, header.ref)
    model = session.scalars(
        select(schema.Model).where(schema.Model.project_pk == project.pk, schema.Model.training_id == training_id)
    ).first()
    if model is None:
        return None
    if session.get(schema.ModelArtifact, (model.pk, header.format)) is not None:
        return _model_message(session, model, header.format)
    return model.version


def _with_version(header: pb.UploadModelHeader, version: str) -> pb.UploadModelHeader:
    copy = pb.UploadModelHeader()
    copy.CopyFrom(header)
    copy.version = version
    copy.new_major = False
    return copy


def _complete(doc: dict[str, Any], plan: _Plan, host: str, fmt: str) -> dict[str, Any]:
    """model.json with the fields the hub owns set, and registry-only fields dropped."""
    completed = {key: value for key, value in doc.items() if key not in REGISTRY_FIELDS}
    completed.update(
        host=host,
        organization=plan.organization,
        project=plan.project,
        version=plan.version,
        id=plan.model_id,
        format=fmt,
    )
    return completed


def _blob_key(plan: _Plan, fmt: str) -> str:
    return f"models/{plan.organization}/{plan.project}/{plan.version}/{fmt}-{uuid.uuid4().hex[:12]}.zip"


@dataclass(frozen=True)
class _Stored:
    key: str
    sha256: str
    size: int
    model_json: str


def _record(
    session: Session,
    *,
    header: pb.UploadModelHeader,
    plan: _Plan,
    doc: dict[str, Any],
    stored: _Stored,
    events: EventBus,
    tolerance: float,
) -> model_pb2.ModelInfo:
    project = get_project(session, header.ref)
    now = utcnow()
    if header.version:
        model = get_model(session, project, header.version)
        _check_format_free(session, model, header.format)
    else:
        if next_version(session, project.pk, header.new_major) != (plan.major, plan.minor):
            raise _VersionTaken
        info = model_info_from_json(doc)
        promotion = decide(session, project, info, tolerance, now)  # before the new row is flushed
        model = schema.Model(
            id=plan.model_id,
            project_pk=project.pk,
            major=plan.major,
            minor=plan.minor,
            base_model_version=info.base_model_version,
            training_id=info.training_id,
            variant=info.variant,
            comment=header.comment or info.comment,
            metrics=info.metrics.SerializeToString() if has_metrics(info) else None,
            promoted=promotion.state == PROMOTED,
            promotion=promotion.SerializeToString(),
            create_time=now,
        )
        session.add(model)
        try:
            session.flush()
        except IntegrityError:
            raise _VersionTaken from None
        events.append(session, events_pb.EVENT_TYPE_MODEL_PUBLISHED, project, plan.version)
        if promotion.state != PROMOTED:
            events.append(session, events_pb.EVENT_TYPE_MODEL_HELD, project, plan.version, promotion.reason[:256])
        elif follows_latest(session, project):  # the deployment target moved with the new version
            events.append(session, events_pb.EVENT_TYPE_DEPLOYMENT_CHANGED, project, plan.version)
    session.add(
        schema.ModelArtifact(
            model_pk=model.pk,
            format=header.format,
            blob_key=stored.key,
            sha256=stored.sha256,
            size_bytes=stored.size,
            model_json=stored.model_json,
            create_time=now,
        )
    )
    try:
        session.flush()
    except IntegrityError:
        raise AlreadyExists(f"version {model.version} already has format {header.format!r}") from None
    session.execute(
        update(schema.Conversion)
        .where(schema.Conversion.model_pk == model.pk, schema.Conversion.target_format == header.format)
        .values(state=converter_pb.CONVERSION_STATE_SUCCEEDED, lease_expire_time=None, update_time=now)
    )
    events.append(session, events_pb.EVENT_TYPE_FORMAT_ADDED, project, plan.version, header.format)
    return _model_message(session, model, header.format)


# --- messages ---------------------------------------------------------------------------------


def _info(model: schema.Model, artifact: schema.ModelArtifact, formats: list[str]) -> model_pb2.ModelInfo:
    info = model_info_from_json(json.loads(artifact.model_json))
    info.formats[:] = formats
    info.sha256 = artifact.sha256
    info.size_bytes = artifact.size_bytes
    info.create_time.FromDatetime(model.create_time)
    if model.comment:
        info.comment = model.comment
    if model.metrics is not None:
        info.metrics.ParseFromString(model.metrics)
    else:
        info.ClearField("metrics")  # measured never: no figures, not zeros
    info.promotion.CopyFrom(promotion_of(model))
    return info


def _model_message(session: Session, model: schema.Model, fmt: str = "") -> model_pb2.ModelInfo:
    artifacts = _artifacts(session, [model.pk])[model.pk]
    chosen = next((a for a in artifacts if a.format == fmt), None) if fmt else (artifacts[0] if artifacts else None)
    if chosen is None:
        raise NotFound(f"version {model.version} has no format {fmt!r}; it has {[a.format for a in artifacts]}")
    return _info(model, chosen, [a.format for a in artifacts])


def _key(project: schema.Project, version: str) -> pb.ModelKey:
    return pb.ModelKey(
        ref=project_pb.ProjectRef(organization=project.organization, project=project.name), version=version
    )


# --- conversions ------------------------------------------------------------------------------


def _lease(request: pb.ClaimConversionRequest) -> timedelta:
    if not request.HasField("lease"):
        return DEFAULT_LEASE
    lease = request.lease.ToTimedelta()
    if lease <= timedelta(0) or lease > MAX_LEASE:
        raise InvalidArgument("lease must be positive and at most 24 hours")
    return lease


def _source_format(formats: set[str], target: str) -> str | None:
    return next((f for f in SOURCE_FORMATS if f in formats and f != target), None)


def _take(session: Session, row: schema.Conversion, node_id: str, source: str, now: datetime, expire: datetime) -> bool:
    """Claim an existing conversion unless it is done, leased or out of attempts (compare-and-set)."""
    if row.state == converter_pb.CONVERSION_STATE_RUNNING:
        if row.lease_expire_time is not None and row.lease_expire_time > now:
            return False
        if row.attempts >= MAX_CONVERSION_ATTEMPTS:
            row.state = converter_pb.CONVERSION_STATE_FAILED
            row.reason = f"lease expired on the last of {row.attempts} attempts: {row.reason}".rstrip(": ")
            row.update_time = now
            return False
    elif row.state != converter_pb.CONVERSION_STATE_PENDING:
        return False
    claimed = session.execute(
        update(schema.Conversion)
        .where(
            schema.Conversion.id == row.id,
            schema.Conversion.attempts == row.attempts,
            schema.Conversion.state == row.state,
        )
        .values(
            state=converter_pb.CONVERSION_STATE_RUNNING,
            attempts=row.attempts + 1,
            node_id=node_id,
            source_format=source,
            lease_expire_time=expire,
            update_time=now,
        )
        .execution_options(synchronize_session="fetch")
    )
    # an UPDATE's result is a CursorResult (it has rowcount); Session.execute's stubs say Result
    return cast("CursorResult[Any]", claimed).rowcount == 1


def _create(
    session: Session, model: schema.Model, node_id: str, source: str, target: str, now: datetime, expire: datetime
) -> schema.Conversion | None:
    row = schema.Conversion(
        id=str(uuid.uuid4()),
        model_pk=model.pk,
        source_format=source,
        target_format=target,
        state=converter_pb.CONVERSION_STATE_RUNNING,
        attempts=1,
        node_id=node_id,
        lease_expire_time=expire,
        reason="",
        create_time=now,
        update_time=now,
    )
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:  # another replica created it a moment ago
        return None
    return row


# --- servicer ---------------------------------------------------------------------------------


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    async def UploadModel(
        self, request_iterator: AsyncIterator[pb.UploadModelRequest], context: grpc.aio.ServicerContext
    ) -> pb.UploadModelResponse:
        first = await anext(aiter(request_iterator), None)
        if first is None or first.WhichOneof("part") != "header":
            raise InvalidArgument("the first UploadModel message must be the header")
        header = first.header
        _check_header(header)
        await self.hub.db.read(lambda s: _plan(s, header))  # fail fast, before any bytes move
        spool = self.hub.spool_file()
        try:
            await receive_chunks(request_iterator, header.blob, spool, "model zip")
            doc = await asyncio.to_thread(check_zip, spool)
            await asyncio.to_thread(check_graph, spool, doc)
            if not header.version:  # a new version: its metrics decide its promotion
                given = model_info_from_json({k: v for k, v in doc.items() if k not in HUB_FIELDS})
                check_metrics(given.metrics, "model.json metrics")
            model = await self._publish(header, spool, doc)
        finally:
            await asyncio.to_thread(spool.unlink, True)
        self.hub.events.notify()
        return pb.UploadModelResponse(model=model)

    async def _publish(self, header: pb.UploadModelHeader, spool: Path, doc: dict[str, Any]) -> model_pb2.ModelInfo:
        """Rewrite, store and record; plans again when a concurrent upload took the version."""
        training_id = str(doc.get("training_id") or "")
        if training_id and not header.version:
            earlier = await self.hub.db.read(lambda s: _training_model(s, header, training_id))
            if isinstance(earlier, model_pb2.ModelInfo):
                return earlier  # a trainer retrying an upload whose answer it never got
            if earlier is not None:  # the training's other formats went out already: same version
                header = _with_version(header, earlier)
        for _ in range(VERSION_ATTEMPTS):
            plan = await self.hub.db.read(lambda s: _plan(s, header))
            completed = _complete(doc, plan, self.hub.host, header.format)
            stored = await self._store(spool, plan, header.format, completed)
            try:
                record = partial(
                    _record,
                    header=header,
                    plan=plan,
                    doc=completed,
                    stored=stored,
                    events=self.hub.events,
                    tolerance=self.hub.settings.promotion_tolerance,
                )
                return await self.hub.db.write(record)
            except _VersionTaken:
                await asyncio.to_thread(self.hub.store.delete, stored.key)
            except Exception:
                # Not on cancellation: the transaction may still commit and reference the blob.
                await asyncio.to_thread(self.hub.store.delete, stored.key)
                raise
        raise Aborted("concurrent uploads kept taking the next version; upload again")

    async def _store(self, spool: Path, plan: _Plan, fmt: str, completed: dict[str, Any]) -> _Stored:
        text = dumps(completed)
        packed = self.hub.spool_file()
        try:
            sha256, size = await asyncio.to_thread(rewrite_zip, spool, packed, text.encode("utf-8"))
            key = _blob_key(plan, fmt)
            await asyncio.to_thread(self.hub.store.put_file, key, packed)
        finally:
            await asyncio.to_thread(packed.unlink, True)
        return _Stored(key=key, sha256=sha256, size=size, model_json=text)

    async def GetModel(self, request: pb.GetModelRequest, context: grpc.aio.ServicerContext) -> pb.GetModelResponse:
        def get(session: Session) -> model_pb2.ModelInfo:
            model = get_model(session, get_project(session, request.key.ref), request.key.version)
            return _model_message(session, model, request.format)

        return pb.GetModelResponse(model=await self.hub.db.read(get))

    async def ListModels(
        self, request: pb.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListModelsResponse:
        def list_(session: Session) -> list[model_pb2.ModelInfo]:
            project = get_project(session, request.ref)
            query = (
                select(schema.Model)
                .where(schema.Model.project_pk == project.pk)
                .order_by(schema.Model.major.desc(), schema.Model.minor.desc())
            )
            if request.format:
                query = query.where(
                    exists().where(
                        schema.ModelArtifact.model_pk == schema.Model.pk,
                        schema.ModelArtifact.format == request.format,
                    )
                )
            models = list(session.scalars(query))
            grouped = _artifacts(session, [m.pk for m in models])
            infos = []
            for model in models:
                artifacts = grouped[model.pk]
                if not artifacts:
                    continue
                chosen = next((a for a in artifacts if a.format == request.format), artifacts[0])
                infos.append(_info(model, chosen, [a.format for a in artifacts]))
            return infos

        return pb.ListModelsResponse(models=await self.hub.db.read(list_))

    async def DownloadModel(
        self, request: pb.DownloadModelRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.DownloadModelResponse]:
        if not request.format:
            raise InvalidArgument("format is required, e.g. onnx (GetModel lists a version's formats)")
        if request.offset < 0:
            raise OutOfRange(f"offset {request.offset} is negative")

        def find(session: Session) -> schema.ModelArtifact:
            model = get_model(session, get_project(session, request.key.ref), request.key.version)
            artifact = session.get(schema.ModelArtifact, (model.pk, request.format))
            if artifact is None:
                raise NotFound(f"version {model.version} has no format {request.format!r}")
            return artifact

        artifact = await self.hub.db.read(find)
        if request.offset > artifact.size_bytes:
            raise OutOfRange(f"offset {request.offset} is beyond the zip's {artifact.size_bytes} bytes")
        yield pb.DownloadModelResponse(
            header=transfer_pb2.BlobHeader(
                name=f"{request.key.version}-{request.format}.zip",
                content_type="application/zip",
                size_bytes=artifact.size_bytes,
                sha256=artifact.sha256,
            )
        )
        if request.offset == artifact.size_bytes:
            return  # nothing left (and S3 refuses an empty range)
        offset = request.offset
        async for data in self._read_blob(artifact.blob_key, offset):
            yield pb.DownloadModelResponse(chunk=transfer_pb2.BlobChunk(offset=offset, data=data))
            offset += len(data)
        if offset != artifact.size_bytes:
            raise DataLoss(f"the stored zip has {offset} bytes, the registry expected {artifact.size_bytes}")

    async def _read_blob(self, key: str, offset: int) -> AsyncIterator[bytes]:
        chunks = self.hub.store.read_chunks(key, offset, CHUNK_BYTES)
        try:
            while (data := await asyncio.to_thread(next, chunks, None)) is not None:
                yield data
        except BlobNotFound:
            raise DataLoss(f"the stored zip {key} is missing from the object store") from None
        finally:
            with contextlib.suppress(ValueError):  # still running in a worker after a cancellation
                chunks.close()

    async def GetModelLineage(
        self, request: pb.GetModelLineageRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetModelLineageResponse:
        def lineage(session: Session) -> list[model_pb2.ModelInfo]:
            project = get_project(session, request.key.ref)
            model: schema.Model | None = get_model(session, project, request.key.version)
            chain: list[model_pb2.ModelInfo] = []
            seen: set[str] = set()
            while model is not None and model.version not in seen:
                seen.add(model.version)
                chain.append(_model_message(session, model))
                try:
                    model = get_model(session, project, model.base_model_version) if model.base_model_version else None
                except (NotFound, InvalidArgument):  # trained from a model this hub does not hold
                    model = None
            return chain

        return pb.GetModelLineageResponse(models=await self.hub.db.read(lineage))

    async def SetModelMetrics(
        self, request: pb.SetModelMetricsRequest, context: grpc.aio.ServicerContext
    ) -> pb.SetModelMetricsResponse:
        metrics = request.metrics
        check_metrics(metrics, "metrics")

        def set_(session: Session) -> None:
            model = get_model(session, get_project(session, request.key.ref), request.key.version)
            model.metrics = metrics.SerializeToString() if metrics.ByteSize() else None  # empty: never measured

        await self.hub.db.write(set_)
        return pb.SetModelMetricsResponse()

    async def ClaimConversion(
        self, request: pb.ClaimConversionRequest, context: grpc.aio.ServicerContext
    ) -> pb.ClaimConversionResponse:
        if not request.node_id:
            raise InvalidArgument("node_id is required")
        targets = list(dict.fromkeys(request.target_formats))
        if not targets or not all(_FORMAT.match(t) for t in targets):
            raise InvalidArgument("target_formats must name at least one format, e.g. onnx_fp16")
        lease = _lease(request)
        scoped = bool(request.ref.organization or request.ref.project)
        if not scoped:
            access.check_every_project("ref")

        def claim(session: Session) -> pb.ClaimConversionResponse:
            now = self.hub.now()
            expire = now + lease
            query = (
                select(schema.Model, schema.Project)
                .join(schema.Project, schema.Project.pk == schema.Model.project_pk)
                .where(
                    exists().where(
                        schema.ModelArtifact.model_pk == schema.Model.pk,
                        schema.ModelArtifact.format.in_(SOURCE_FORMATS),
                    ),
                    # Skip versions that already have every target format.
                    select(func.count())
                    .where(schema.ModelArtifact.model_pk == schema.Model.pk, schema.ModelArtifact.format.in_(targets))
                    .scalar_subquery()
                    < len(targets),
                )
                .order_by(schema.Model.create_time, schema.Model.pk)
            )
            if scoped:
                query = query.where(schema.Model.project_pk == get_project(session, request.ref).pk)
            for model, project in session.execute(query).all():
                formats = set(
                    session.scalars(
                        select(schema.ModelArtifact.format).where(schema.ModelArtifact.model_pk == model.pk)
                    )
                )
                for target in targets:
                    source = _source_format(formats, target)
                    if target in formats or source is None:
                        continue
                    row = session.scalars(
                        select(schema.Conversion).where(
                            schema.Conversion.model_pk == model.pk, schema.Conversion.target_format == target
                        )
                    ).one_or_none()
                    if row is None:
                        row = _create(session, model, request.node_id, source, target, now, expire)
                    elif not _take(session, row, request.node_id, source, now, expire):
                        row = None
                    if row is not None:
                        return pb.ClaimConversionResponse(
                            conversion_id=row.id,
                            key=_key(project, model.version),
                            source_format=source,
                            target_format=target,
                            lease_expire_time=to_timestamp(expire),
                            attempt=row.attempts,
                        )
            raise NotFound(f"no conversion to {', '.join(targets)} is pending")

        return await self.hub.db.write(claim)

    async def ReportConversionFailure(
        self, request: pb.ReportConversionFailureRequest, context: grpc.aio.ServicerContext
    ) -> pb.ReportConversionFailureResponse:
        if not request.reason.strip():
            raise InvalidArgument("reason is required, e.g. 'parity check failed: max abs diff 3e-3 > 1e-4'")

        def report(session: Session) -> bool:
            row = session.get(schema.Conversion, request.conversion_id)
            if row is None:
                raise NotFound(f"conversion {request.conversion_id!r} does not exist")
            converted = session.get(schema.Model, row.model_pk)
            owner = session.get(schema.Project, converted.project_pk) if converted else None
            if owner is not None:
                check_in_scope(owner)
            if row.state != converter_pb.CONVERSION_STATE_RUNNING:
                state = converter_pb.ConversionState.Name(row.state)
                raise FailedPrecondition(f"conversion {row.id} is {state}, not running; claim it first")
            row.reason = request.reason.strip()
            row.lease_expire_time = None
            row.update_time = self.hub.now()
            if request.permanent or row.attempts >= MAX_CONVERSION_ATTEMPTS:
                row.state = converter_pb.CONVERSION_STATE_FAILED
                return False
            row.state = converter_pb.CONVERSION_STATE_PENDING
            model = session.get(schema.Model, row.model_pk)
            project = session.get(schema.Project, model.project_pk) if model else None
            version = model.version if model else ""
            self.hub.events.append(
                session, events_pb.EVENT_TYPE_CONVERSION_REQUESTED, project, version, row.target_format
            )
            return True

        will_retry = await self.hub.db.write(report)
        if will_retry:
            self.hub.events.notify()
        return pb.ReportConversionFailureResponse(will_retry=will_retry)
