"""AnnotatorService: interactive sessions on hub images, written back to the hub on Accept."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

import grpc
import numpy as np

from visionloop.annotator.v1 import annotator_service_pb2 as pb
from visionloop.annotator.v1 import annotator_service_pb2_grpc
from visionloop.common.v1 import annotation_pb2, category_pb2, geometry_pb2
from visionloop.lib import images
from visionloop.loop.v1 import project_service_pb2
from visionloop.runtime import access
from visionloop.runtime.errors import FailedPrecondition, InvalidArgument, Unavailable
from visionloop.server.annotator import prompts as checks
from visionloop.server.annotator import ranking
from visionloop.server.annotator.classical import ClassicalImage
from visionloop.server.annotator.hub_client import AnnotatorHub
from visionloop.server.annotator.preannotate import DeployedModel
from visionloop.server.annotator.prompts import Item, Prompts
from visionloop.server.annotator.selection import Selection, Selector
from visionloop.server.annotator.sessions import PreparedImage, Sessions
from visionloop.server.annotator.watcher import PriorityWatcher

if TYPE_CHECKING:
    from visionloop.server.annotator.labelstudio.server import LabelStudioServer

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
DOWNLOAD_BATCH = 32
DEFAULT_PREANNOTATE = 100
Backend = Callable[[str, np.ndarray], PreparedImage]  # (image id, BGR pixels) -> prepared image


def decode(data: bytes, limits: images.Limits) -> np.ndarray:
    """The hub's copy of an image as every service decodes it (upright, BGR; blocking).

    Over this annotator's limits: RESOURCE_EXHAUSTED; damaged in storage: FAILED_PRECONDITION.
    """
    try:
        return images.decode(data, limits)
    except (images.TooManyBytes, images.TooManyPixels):
        raise
    except images.ImageError as error:
        raise FailedPrecondition(f"the hub's copy of the image does not decode: {error.message}") from None


def embedding(data: bytes, limits: images.Limits) -> np.ndarray:
    """The image's ranking embedding (blocking)."""
    return ranking.embedding(decode(data, limits))


def classical(image_id: str, image: np.ndarray) -> PreparedImage:
    return ClassicalImage(image)


class AnnotatorServicer(annotator_service_pb2_grpc.AnnotatorServiceServicer):
    def __init__(
        self,
        default_ref: project_service_pb2.ProjectRef,
        backends: dict[str, Backend],
        limits: images.Limits = images.DEFAULT_LIMITS,
    ) -> None:
        self.default_ref = default_ref
        self.backends = backends
        self.limits = limits
        self.default_backend = "sam" if "sam" in backends else "classical"
        self.sessions = Sessions()
        self.hub: AnnotatorHub | None = None
        self.deployed: DeployedModel | None = None
        self.label_studio: LabelStudioServer | None = None
        self.watcher: PriorityWatcher | None = None
        self.criteria: dict[tuple[str, str], tuple[int, int]] = {}

    def _hub(self) -> AnnotatorHub:
        if self.hub is None:
            raise Unavailable("the annotator is starting; retry in a moment")
        return self.hub

    def criteria_for(self, ref: project_service_pb2.ProjectRef) -> tuple[int, int]:
        """The ranker and reducer new detections of the project are ranked with."""
        return self.criteria.get((ref.organization, ref.project), (pb.RANKER_LEAST_CONFIDENCE, pb.REDUCER_MAX))

    def _ref(self, organization: str, project: str) -> project_service_pb2.ProjectRef:
        organization = organization or self.default_ref.organization
        project = project or self.default_ref.project
        if not _NAME.match(organization) or not _NAME.match(project):
            raise InvalidArgument("organization and project must be 1-64 characters of a-z, 0-9, '_' and '-'")
        # The hub sees the annotator's own token: a caller's token limited to a project is checked here.
        access.check_project(organization, project)
        return project_service_pb2.ProjectRef(organization=organization, project=project)

    # --- sessions ---------------------------------------------------------------------------

    async def OpenSession(
        self, request: pb.OpenSessionRequest, context: grpc.aio.ServicerContext
    ) -> pb.OpenSessionResponse:
        ref = self._ref(request.organization, request.project)
        if not request.image_id:
            raise InvalidArgument("image_id is required")
        name = request.backend or self.default_backend
        if name not in ("classical", "sam"):
            raise InvalidArgument(f"backend {name!r} is unknown; use classical or sam")
        backend = self.backends.get(name)
        if backend is None:
            raise FailedPrecondition("the sam backend needs SAM_ENCODER_PATH and SAM_DECODER_PATH; use classical")
        metadata, data = await self._hub().image(ref, request.image_id)
        image = await asyncio.to_thread(decode, data, self.limits)
        prepared = await asyncio.to_thread(backend, request.image_id, image)
        height, width = image.shape[:2]
        session = self.sessions.add(
            ref=ref,
            image_id=metadata.id,
            tool=request.tool or pb.SESSION_TOOL_MASK,
            width=width,
            height=height,
            prepared=prepared,
        )
        return pb.OpenSessionResponse(session_id=session.id, image_width=width, image_height=height, backend=name)

    async def Prompt(self, request: pb.PromptRequest, context: grpc.aio.ServicerContext) -> pb.PromptResponse:
        session = self.sessions.get(request.session_id)
        async with session.lock:
            added: list[Item] = [checks.click(p, session.width, session.height) for p in request.points]
            if request.HasField("box"):
                added.append(checks.box(request.box, session.width, session.height))
            if not added and not request.category_id:
                raise InvalidArgument("the prompt is empty: add points, a box or a category")
            if added:
                items = [*session.items, *added]
                session.result = await asyncio.to_thread(session.prepared.segment, Prompts.of(items))
                session.items = items
            if request.category_id:
                session.category_id = request.category_id
            return pb.PromptResponse(proposal=session.proposal(), prompt_count=len(session.items))

    async def Undo(self, request: pb.UndoRequest, context: grpc.aio.ServicerContext) -> pb.UndoResponse:
        session = self.sessions.get(request.session_id)
        async with session.lock:
            if not session.items:
                raise FailedPrecondition("there is no prompt to undo")
            items = session.items[:-1]
            prompts = Prompts.of(items)
            usable = prompts.box is not None or prompts.positives
            session.result = await asyncio.to_thread(session.prepared.segment, prompts) if usable else None
            session.items = items
            return pb.UndoResponse(proposal=session.proposal(), prompt_count=len(items))

    async def Reset(self, request: pb.ResetRequest, context: grpc.aio.ServicerContext) -> pb.ResetResponse:
        session = self.sessions.get(request.session_id)
        async with session.lock:
            session.items, session.result = [], None
        return pb.ResetResponse()

    async def Accept(self, request: pb.AcceptRequest, context: grpc.aio.ServicerContext) -> pb.AcceptResponse:
        session = self.sessions.get(request.session_id)
        async with session.lock:
            proposal = session.proposal()
            if proposal is None or not proposal.mask.counts or len(proposal.mask.counts) < 2:
                raise FailedPrecondition(
                    "there is no proposal to accept (none yet, or an empty one): prompt with a box or a point first"
                )
            wanted = request.category_id or session.category_id
            if not wanted:
                raise InvalidArgument("category_id is required (in Accept or an earlier Prompt)")
            category = await self._category(session.ref, wanted)
            annotation = annotation_pb2.Annotation(
                image_id=session.image_id,
                category_id=category.id,
                shape=_shape(category, proposal),
                creator=annotation_pb2.Creator(person=request.person or "annotator"),
            )
            stored = await self._hub().create_annotation(session.ref, annotation)
            return pb.AcceptResponse(annotation=stored)

    async def CloseSession(
        self, request: pb.CloseSessionRequest, context: grpc.aio.ServicerContext
    ) -> pb.CloseSessionResponse:
        self.sessions.close(request.session_id)
        return pb.CloseSessionResponse()

    # --- active learning --------------------------------------------------------------------

    async def RankQueue(self, request: pb.RankQueueRequest, context: grpc.aio.ServicerContext) -> pb.RankQueueResponse:
        ref = self._ref(request.organization, request.project)
        ranker = request.ranker or pb.RANKER_LEAST_CONFIDENCE
        reducer = request.reducer or pb.REDUCER_MAX
        if ranker not in pb.Ranker.values() or reducer not in pb.Reducer.values():
            raise InvalidArgument(f"unknown ranker {request.ranker} or reducer {request.reducer}")
        hub = self._hub()
        queue = [image.id for image in await hub.queue(ref)]
        if ranker == pb.RANKER_DIVERSITY:
            priorities = await self._diversity(ref, queue)
        else:
            priorities = [
                ranking.image_priority(await hub.detections(ref, image_id), ranker, reducer) for image_id in queue
            ]
        if ranker != pb.RANKER_DIVERSITY:  # new detections (pre-annotation) are ranked the same way
            self.criteria[(ref.organization, ref.project)] = (ranker, reducer)
        for image_id, priority in zip(queue, priorities, strict=True):
            await hub.set_priority(ref, image_id, priority)
        return pb.RankQueueResponse(ranked=len(queue))

    async def SelectImages(
        self, request: pb.SelectImagesRequest, context: grpc.aio.ServicerContext
    ) -> pb.SelectImagesResponse:
        ref = self._ref(request.organization, request.project)
        selection = Selection.of(request)
        return await Selector(self._hub(), self.deployed, ref, self.limits).select(selection)

    async def PreAnnotate(
        self, request: pb.PreAnnotateRequest, context: grpc.aio.ServicerContext
    ) -> pb.PreAnnotateResponse:
        ref = self._ref(request.organization, request.project)
        if request.limit < 0:
            raise InvalidArgument("limit must be 0 (default) or more")
        limit = request.limit or DEFAULT_PREANNOTATE
        hub = self._hub()
        if self.deployed is None:
            raise Unavailable("the annotator is starting; retry in a moment")
        model = await self.deployed.get(ref)
        ids = list(dict.fromkeys(request.image_ids)) or [image.id for image in await hub.queue(ref, limit)]
        ids = ids[:limit]
        ranker, reducer = self.criteria.get(
            (ref.organization, ref.project), (pb.RANKER_LEAST_CONFIDENCE, pb.REDUCER_MAX)
        )
        suggestions = 0
        for start in range(0, len(ids), DOWNLOAD_BATCH):
            batch = ids[start : start + DOWNLOAD_BATCH]
            data = await hub.download(ref, batch)
            for image_id in batch:
                detections = await self.deployed.detect(model, data[image_id])
                suggestions += await hub.put_detections(ref, image_id, detections)
                await hub.set_priority(ref, image_id, ranking.image_priority(detections, ranker, reducer))
        return pb.PreAnnotateResponse(images=len(ids), suggestions=suggestions, model_version=model.version)

    async def _diversity(self, ref: project_service_pb2.ProjectRef, queue: list[str]) -> list[float]:
        hub = self._hub()
        annotated = [image.id for image in await hub.annotated(ref) if image.id not in set(queue)]
        vectors: dict[str, np.ndarray] = {}
        for start in range(0, len(queue) + len(annotated), DOWNLOAD_BATCH):
            batch = [*queue, *annotated][start : start + DOWNLOAD_BATCH]
            for image_id, data in (await hub.download(ref, batch)).items():
                vectors[image_id] = await asyncio.to_thread(embedding, data, self.limits)
        empty = np.zeros((0, 1))
        queued = np.stack([vectors[i] for i in queue]) if queue else empty
        reference = np.stack([vectors[i] for i in annotated]) if annotated else empty
        return ranking.k_centre(queued, reference).tolist()

    async def _category(self, ref: project_service_pb2.ProjectRef, wanted: str) -> category_pb2.Category:
        for category in await self._hub().categories(ref):
            if wanted in (category.id, category.name):
                return category
        raise InvalidArgument(f"category {wanted!r} does not exist in {ref.organization}/{ref.project}")


def _shape(category: category_pb2.Category, proposal: pb.Proposal) -> geometry_pb2.Shape:
    """The proposal in the geometry the category is labelled with."""
    if category.type == category_pb2.CATEGORY_TYPE_BOX:
        return geometry_pb2.Shape(box=proposal.box)
    if category.type == category_pb2.CATEGORY_TYPE_POINT:
        return geometry_pb2.Shape(point=proposal.point)
    if category.type == category_pb2.CATEGORY_TYPE_SEGMENTATION:
        return geometry_pb2.Shape(polygon=proposal.polygon)
    raise InvalidArgument(f"category {category.name!r} labels whole images; sessions make boxes, points and outlines")
