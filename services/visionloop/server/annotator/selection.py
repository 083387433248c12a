"""SelectImages: a label budget spent on the inbox, by an acquisition function (``lib.acquisition``).

The candidates are the project's inbox images, what detectors uploaded (oldest first, at most
``MAX_CANDIDATES``). ``ACQUISITION_ARRIVAL`` takes the oldest, ``ACQUISITION_RANDOM`` a seeded
uniform draw. The other two score every candidate's detections: its newest stored ones (the
detector uploads them with the frame), or with ``score_threshold`` the deployed model's on it now,
down to that threshold. ``ACQUISITION_BALANCED`` also needs what is labelled already: the newest
``REFERENCE_LIMIT`` annotated images, whose annotations count per category (the rare boost), whose
look and contents are the embeddings the diversity stage keeps away from, and whose cells are what
a candidate's look is new against (novelty).

The picks move to the annotation queue with the tag ``selected`` and priorities above every image
waiting (inbox and queue): the highest waiting priority, floored at 0, plus 1 for the first pick
down to plus 1/budget for the last. The priority watcher leaves tagged images alone, so the
queue, and Label Studio's task order with it (inbox and queue by priority), follow the selection.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from visionloop.annotator.v1 import annotator_service_pb2 as pb
from visionloop.common.v1 import annotation_pb2, detection_pb2, image_pb2
from visionloop.lib import acquisition, images
from visionloop.lib.acquisition import Criteria
from visionloop.loop.v1 import project_service_pb2
from visionloop.runtime.errors import InvalidArgument
from visionloop.runtime.logging import get_logger
from visionloop.server.annotator.hub_client import AnnotatorHub
from visionloop.server.annotator.preannotate import DeployedModel

log = get_logger(__name__)
MAX_BUDGET = 10_000
MAX_CANDIDATES = 10_000
REFERENCE_LIMIT = 1000
DOWNLOAD_BATCH = 32
SELECTED_TAG = "selected"
_DETECTION_FIELDS = ("boxes", "points", "segmentations", "classifications")


@dataclass(frozen=True)
class Labelled:
    """What is labelled already, as the acquisition weighs candidates against it."""

    counts: Counter[str]  # objects per category (the rare boost)
    embeddings: np.ndarray | None = None  # one row per image (diversity)
    patches: np.ndarray | None = None  # the images' cells, one row per cell (novelty)


@dataclass(frozen=True)
class Selection:
    """A checked SelectImagesRequest."""

    budget: int
    acquisition: int
    criteria: Criteria  # by name: the field above shadows the module in this class
    score_threshold: float
    seed: int

    @classmethod
    def of(cls, request: pb.SelectImagesRequest) -> Selection:
        if not 1 <= request.budget <= MAX_BUDGET:
            raise InvalidArgument(f"budget must be 1 to {MAX_BUDGET} images, got {request.budget}")
        kind = request.acquisition or pb.ACQUISITION_BALANCED
        if kind not in pb.Acquisition.values():
            raise InvalidArgument(f"unknown acquisition {request.acquisition}")
        ranker = request.ranker or pb.RANKER_LEAST_CONFIDENCE
        if ranker not in pb.Ranker.values() or ranker == pb.RANKER_DIVERSITY:
            raise InvalidArgument(
                f"ranker {request.ranker} is not a per-object uncertainty: use least confidence, margin or entropy"
            )
        balanced = kind == pb.ACQUISITION_BALANCED
        reducer = request.reducer or pb.REDUCER_MAX
        if reducer not in pb.Reducer.values():
            raise InvalidArgument(f"unknown reducer {request.reducer}")
        threshold = request.score_threshold
        if not (math.isfinite(threshold) and 0 <= threshold <= 1):
            raise InvalidArgument(f"score_threshold must be 0 (stored detections) or in (0, 1], got {threshold:g}")
        criteria = acquisition.Criteria(
            ranker=ranker, reducer=reducer, rare_boost=balanced, diversity=balanced, novelty=balanced
        )
        return cls(request.budget, kind, criteria, threshold, request.seed)


def newest(detections: detection_pb2.Detections) -> detection_pb2.Detections:
    """Only the detections of the newest model version among them (versions like ``1.10`` > ``1.9``)."""
    versions = {
        item.model_version for name in _DETECTION_FIELDS for item in getattr(detections, name) if item.model_version
    }
    if len(versions) <= 1:
        return detections
    last = max(versions, key=lambda v: tuple(int(p) if p.isdigit() else -1 for p in v.split(".")))
    result = detection_pb2.Detections()
    for name in _DETECTION_FIELDS:
        getattr(result, name).extend(item for item in getattr(detections, name) if item.model_version == last)
    return result


class Selector:
    """SelectImages for one project, over the hub (and the deployed model for ``score_threshold``)."""

    def __init__(
        self,
        hub: AnnotatorHub,
        deployed: DeployedModel | None,
        ref: project_service_pb2.ProjectRef,
        limits: images.Limits,
    ) -> None:
        self.hub = hub
        self.deployed = deployed
        self.ref = ref
        self.limits = limits

    async def select(self, selection: Selection) -> pb.SelectImagesResponse:
        inbox = await self.hub.inbox(self.ref, MAX_CANDIDATES)
        version = ""
        if selection.acquisition == pb.ACQUISITION_ARRIVAL:
            picks = [acquisition.Pick(image.id, 0.0, 0.0) for image in inbox[: selection.budget]]
        elif selection.acquisition == pb.ACQUISITION_RANDOM:
            drawn = random.Random(selection.seed).sample(inbox, min(selection.budget, len(inbox)))
            picks = [acquisition.Pick(image.id, 0.0, 0.0) for image in drawn]
        else:
            picks, version = await self._acquire(selection, inbox)
        count = len(picks)
        base = max(0.0, await self.hub.top_priority(self.ref)) if picks else 0.0
        selected = []
        for rank, pick in enumerate(picks):
            priority = base + (count - rank) / count
            await self.hub.enqueue(self.ref, pick.key, priority, SELECTED_TAG)
            selected.append(pb.SelectedImage(image_id=pick.key, priority=priority, uncertainty=pick.uncertainty))
        log.info("images selected", budget=selection.budget, candidates=len(inbox), selected=count)
        return pb.SelectImagesResponse(selected=selected, candidates=len(inbox), model_version=version)

    async def _acquire(
        self, selection: Selection, inbox: Sequence[image_pb2.ImageMetadata]
    ) -> tuple[list[acquisition.Pick], str]:
        diversity = selection.criteria.diversity
        novelty = selection.criteria.novelty
        categories = [c.id for c in await self.hub.categories(self.ref)]
        model = None
        if selection.score_threshold > 0:
            if self.deployed is None:
                raise InvalidArgument("score_threshold needs the deployed model; the annotator is starting")
            model = await self.deployed.get(self.ref)
        candidates: list[acquisition.Candidate] = []
        need_pixels = diversity or novelty or model is not None
        for start in range(0, len(inbox), DOWNLOAD_BATCH):
            batch = [image.id for image in inbox[start : start + DOWNLOAD_BATCH]]
            data = await self.hub.download(self.ref, batch) if need_pixels else {}
            for image_id in batch:
                if model is not None and self.deployed is not None:
                    if image_id not in data:
                        continue
                    found = await self.deployed.detect(model, data[image_id], selection.score_threshold)
                else:
                    found = newest(await self.hub.detections(self.ref, image_id))
                vector = cells = None
                if diversity or novelty:
                    pixels = await self._pixels(image_id, data.get(image_id))
                    if pixels is None:
                        continue
                    if diversity:
                        vector = await asyncio.to_thread(acquisition.embedding, pixels, found, categories)
                    if novelty:
                        cells = await asyncio.to_thread(acquisition.patches, pixels)
                candidates.append(acquisition.Candidate(image_id, found, vector, cells))
        labelled = Labelled(Counter())
        if selection.criteria.rare_boost or diversity or novelty:
            labelled = await self._labelled(categories, diversity, novelty)
        picks = await asyncio.to_thread(
            acquisition.select,
            candidates,
            selection.budget,
            selection.criteria,
            labelled=labelled.counts,
            categories=categories,
            reference=labelled.embeddings,
            reference_patches=labelled.patches,
        )
        return picks, model.info.version if model is not None else ""

    async def _pixels(self, image_id: str, data: bytes | None) -> np.ndarray | None:
        """The image decoded; None (and a warning) when the hub's copy is missing or does not decode."""
        if data is None:
            log.warning("candidate not downloaded; left out of the selection", image=image_id)
            return None
        try:
            return await asyncio.to_thread(images.decode, data, self.limits)
        except images.ImageError as error:
            log.warning("candidate does not decode; left out of the selection", image=image_id, error=error.message)
            return None

    async def _labelled(self, categories: Sequence[str], diversity: bool, novelty: bool) -> Labelled:
        """Objects per category over the newest annotated images, their embeddings (for diversity) and
        their cells (for novelty)."""
        annotated = await self.hub.annotated(self.ref, REFERENCE_LIMIT)
        counts: Counter[str] = Counter()
        vectors = []
        cells = []
        for start in range(0, len(annotated), DOWNLOAD_BATCH):
            batch = [image.id for image in annotated[start : start + DOWNLOAD_BATCH]]
            data = await self.hub.download(self.ref, batch) if diversity or novelty else {}
            for image_id in batch:
                annotations = await self.hub.list_annotations(self.ref, image_id)
                counts.update(a.category_id for a in annotations)
                if not (diversity or novelty) or (pixels := await self._pixels(image_id, data.get(image_id))) is None:
                    continue
                if diversity:
                    found = _as_detections(annotations)
                    vectors.append(await asyncio.to_thread(acquisition.embedding, pixels, found, categories))
                if novelty:
                    cells.append(await asyncio.to_thread(acquisition.patches, pixels))
        return Labelled(counts, np.stack(vectors) if vectors else None, np.concatenate(cells) if cells else None)


def _as_detections(annotations: Sequence[annotation_pb2.Annotation]) -> detection_pb2.Detections:
    """What people labelled, as detections of confidence 1 (one per object; geometry is not compared)."""
    found = detection_pb2.Detections()
    for a in annotations:
        found.boxes.add(category_id=a.category_id, confidence=1.0)
    return found
