"""A blocking client of the annotator for desk tools and scripts: sessions, pre-annotation, ranking."""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType

import numpy as np

from visionloop.annotator.v1 import annotator_service_pb2 as pb
from visionloop.annotator.v1 import annotator_service_pb2_grpc
from visionloop.client.channel import ChannelConfig, create_channel
from visionloop.common.v1 import annotation_pb2, geometry_pb2
from visionloop.server.annotator import masks

Click = tuple[float, float, bool]  # x, y, positive

RANKERS = {
    "least-confidence": pb.RANKER_LEAST_CONFIDENCE,
    "margin": pb.RANKER_MARGIN,
    "entropy": pb.RANKER_ENTROPY,
    "diversity": pb.RANKER_DIVERSITY,
}
REDUCERS = {"max": pb.REDUCER_MAX, "mean": pb.REDUCER_MEAN, "sum": pb.REDUCER_SUM}
ACQUISITIONS = {
    "balanced": pb.ACQUISITION_BALANCED,
    "uncertainty": pb.ACQUISITION_UNCERTAINTY,
    "random": pb.ACQUISITION_RANDOM,
    "arrival": pb.ACQUISITION_ARRIVAL,
}


class AnnotationSession:
    """One open session; ``mask`` is the latest proposal as a boolean array."""

    def __init__(self, client: AnnotatorClient, opened: pb.OpenSessionResponse) -> None:
        self.client = client
        self.id = opened.session_id
        self.width, self.height, self.backend = opened.image_width, opened.image_height, opened.backend
        self.proposal: pb.Proposal | None = None

    @property
    def mask(self) -> np.ndarray | None:
        return masks.decode_rle(self.proposal.mask) if self.proposal is not None else None

    def prompt(
        self,
        clicks: Sequence[Click] = (),
        box: tuple[float, float, float, float] | None = None,
        category: str = "",
    ) -> pb.Proposal:
        """Add clicks ``(x, y, positive)`` and/or a box ``(x, y, width, height)``; returns the new proposal."""
        points = [pb.PointPrompt(point=geometry_pb2.Point(x=x, y=y), positive=positive) for x, y, positive in clicks]
        request = pb.PromptRequest(session_id=self.id, points=points, category_id=category)
        if box is not None:
            request.box.CopyFrom(geometry_pb2.Box(x=box[0], y=box[1], width=box[2], height=box[3]))
        self.proposal = self.client.stub.Prompt(request, timeout=self.client.timeout).proposal
        return self.proposal

    def undo(self) -> pb.Proposal | None:
        response = self.client.stub.Undo(pb.UndoRequest(session_id=self.id), timeout=self.client.timeout)
        self.proposal = response.proposal if response.HasField("proposal") else None
        return self.proposal

    def reset(self) -> None:
        self.client.stub.Reset(pb.ResetRequest(session_id=self.id), timeout=self.client.timeout)
        self.proposal = None

    def accept(self, category: str = "", person: str = "") -> annotation_pb2.Annotation:
        request = pb.AcceptRequest(session_id=self.id, category_id=category, person=person)
        return self.client.stub.Accept(request, timeout=self.client.timeout).annotation

    def close(self) -> None:
        self.client.stub.CloseSession(pb.CloseSessionRequest(session_id=self.id), timeout=self.client.timeout)


class AnnotatorClient:
    """``with AnnotatorClient("annotator:50055") as client: session = client.open(image_id)``."""

    def __init__(
        self, target: str, organization: str = "", project: str = "", *, token: str | None = None, timeout: float = 60.0
    ) -> None:
        self._channel = create_channel(ChannelConfig(target=target, token=token))
        self.stub = annotator_service_pb2_grpc.AnnotatorServiceStub(self._channel)
        self.organization, self.project, self.timeout = organization, project, timeout

    def open(self, image_id: str, tool: str = "mask", backend: str = "") -> AnnotationSession:
        tools = {"mask": pb.SESSION_TOOL_MASK, "box": pb.SESSION_TOOL_BOX, "point": pb.SESSION_TOOL_POINT}
        request = pb.OpenSessionRequest(
            organization=self.organization, project=self.project, image_id=image_id, tool=tools[tool], backend=backend
        )
        return AnnotationSession(self, self.stub.OpenSession(request, timeout=self.timeout))

    def rank(self, ranker: str = "least-confidence", reducer: str = "max") -> int:
        request = pb.RankQueueRequest(
            organization=self.organization, project=self.project, ranker=RANKERS[ranker], reducer=REDUCERS[reducer]
        )
        return self.stub.RankQueue(request, timeout=self.timeout).ranked

    def select(
        self, budget: int, acquisition: str = "balanced", score_threshold: float = 0.0, seed: int = 0
    ) -> pb.SelectImagesResponse:
        """Spend a label budget on the inbox (SelectImages): the picks join the annotation queue in order."""
        request = pb.SelectImagesRequest(
            organization=self.organization,
            project=self.project,
            budget=budget,
            acquisition=ACQUISITIONS[acquisition],
            score_threshold=score_threshold,
            seed=seed,
        )
        return self.stub.SelectImages(request, timeout=self.timeout)

    def preannotate(self, image_ids: Sequence[str] = (), limit: int = 0) -> pb.PreAnnotateResponse:
        request = pb.PreAnnotateRequest(
            organization=self.organization, project=self.project, image_ids=list(image_ids), limit=limit
        )
        return self.stub.PreAnnotate(request, timeout=self.timeout)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> AnnotatorClient:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()
