"""Interactive sessions over gRPC against a real hub: quality, undo/reset, accept, degenerate prompts."""

from __future__ import annotations

import cv2
import grpc
import numpy as np
import pytest

from tests.annotator.conftest import Desk
from tests.detector.conftest import REF
from visionloop.annotator.v1 import annotator_service_pb2 as pb
from visionloop.common.v1 import geometry_pb2
from visionloop.lib.geometry import mask_iou
from visionloop.loop.v1 import annotation_service_pb2, annotation_service_pb2_grpc
from visionloop.server.annotator import masks


def _box(x: float, y: float, w: float, h: float, margin: float = 5) -> geometry_pb2.Box:
    return geometry_pb2.Box(x=x - margin, y=y - margin, width=w + 2 * margin, height=h + 2 * margin)


def _point(x: float, y: float, positive: bool = True) -> pb.PointPrompt:
    return pb.PointPrompt(point=geometry_pb2.Point(x=x, y=y), positive=positive)


def _box_error(got: geometry_pb2.Box, truth: tuple[int, int, int, int]) -> float:
    x, y, w, h = truth
    return max(abs(got.x - x), abs(got.y - y), abs(got.x + got.width - x - w), abs(got.y + got.height - y - h))


async def _open(desk: Desk, index: int, tool: int = pb.SESSION_TOOL_MASK) -> str:
    request = pb.OpenSessionRequest(image_id=desk.image_ids[index], tool=tool)
    response = await desk.stub.OpenSession(request)
    assert (response.image_width, response.image_height, response.backend) == (320, 240, "classical")
    return response.session_id


async def _code(call: object) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    return caught.value.code()


async def test_a_box_gives_the_object_and_a_negative_click_removes_a_wrong_part(desk: Desk) -> None:
    scores = []
    for index, scene in enumerate(desk.scenes[:-1]):
        session = await _open(desk, index)
        response = await desk.stub.Prompt(pb.PromptRequest(session_id=session, box=_box(*scene.box)))
        scores.append(mask_iou(masks.decode_rle(response.proposal.mask), scene.mask))
        assert response.prompt_count == 1
        assert len(response.proposal.polygon.points) >= 3
    assert np.mean(scores) >= 0.85, scores

    scene = desk.scenes[-1]  # an object with a look-alike beside it, both inside a rough box
    session = await _open(desk, len(desk.scenes) - 1)
    first = await desk.stub.Prompt(pb.PromptRequest(session_id=session, box=_box(*scene.rough_box, margin=3)))
    before = masks.decode_rle(first.proposal.mask)
    wrong = before & scene.distractor
    assert wrong.sum() > 100, "the rough box should take in part of the look-alike"
    y, x = masks.centre(wrong).y, masks.centre(wrong).x
    second = await desk.stub.Prompt(pb.PromptRequest(session_id=session, points=[_point(x, y, positive=False)]))
    after = masks.decode_rle(second.proposal.mask)
    assert mask_iou(after, scene.mask) > mask_iou(before, scene.mask) + 0.05
    assert mask_iou(after, scene.mask) >= 0.85
    assert second.prompt_count == 2


async def test_undo_reset_and_accept_write_the_annotation_to_the_hub(desk: Desk) -> None:
    scene = desk.scenes[0]
    session = await _open(desk, 0)
    centre = masks.centre(scene.mask)
    first = await desk.stub.Prompt(pb.PromptRequest(session_id=session, points=[_point(centre.x, centre.y)]))
    assert mask_iou(masks.decode_rle(first.proposal.mask), scene.mask) >= 0.85
    second = await desk.stub.Prompt(pb.PromptRequest(session_id=session, points=[_point(5, 5, positive=False)]))
    assert second.prompt_count == 2
    undone = await desk.stub.Undo(pb.UndoRequest(session_id=session))
    assert undone.prompt_count == 1
    assert undone.proposal.mask == first.proposal.mask
    emptied = await desk.stub.Undo(pb.UndoRequest(session_id=session))
    assert emptied.prompt_count == 0
    assert not emptied.HasField("proposal")
    assert await _code(desk.stub.Undo(pb.UndoRequest(session_id=session))) is grpc.StatusCode.FAILED_PRECONDITION

    await desk.stub.Prompt(pb.PromptRequest(session_id=session, box=_box(*scene.box), category_id="leaf"))
    await desk.stub.Reset(pb.ResetRequest(session_id=session))
    accept = pb.AcceptRequest(session_id=session, person="anna")
    assert await _code(desk.stub.Accept(accept)) is grpc.StatusCode.FAILED_PRECONDITION

    await desk.stub.Prompt(pb.PromptRequest(session_id=session, box=_box(*scene.box), category_id="leaf"))
    polygon = (await desk.stub.Accept(accept)).annotation
    assert polygon.category_id == desk.categories["leaf"].id
    assert polygon.creator.person == "anna"
    outline = np.zeros_like(scene.mask, np.uint8)
    points = np.array([[p.x, p.y] for p in polygon.shape.polygon.points], np.int32)
    cv2.fillPoly(outline, [points], 1)
    assert mask_iou(outline.astype(bool), scene.mask) >= 0.85

    boxed = (await desk.stub.Accept(pb.AcceptRequest(session_id=session, category_id="weed"))).annotation
    assert _box_error(boxed.shape.box, scene.box) <= 3

    async with grpc.aio.insecure_channel(desk.hub_target) as channel:
        stub = annotation_service_pb2_grpc.AnnotationServiceStub(channel)
        listing = annotation_service_pb2.ListAnnotationsRequest(ref=REF, image_id=desk.image_ids[0])
        stored = await stub.ListAnnotations(listing)
    assert sorted(a.shape.WhichOneof("kind") for a in stored.annotations) == ["box", "polygon"]

    await desk.stub.CloseSession(pb.CloseSessionRequest(session_id=session))
    assert await _code(desk.stub.Accept(accept)) is grpc.StatusCode.NOT_FOUND


async def test_box_and_point_tools_snap_a_click_to_the_object(desk: Desk) -> None:
    scene = desk.scenes[1]
    inside = masks.centre(scene.mask)
    session = await _open(desk, 1, tool=pb.SESSION_TOOL_BOX)
    click = pb.PromptRequest(session_id=session, points=[_point(inside.x, inside.y)])
    snapped = (await desk.stub.Prompt(click)).proposal
    assert _box_error(snapped.box, scene.box) <= 3
    stem = (await desk.stub.Accept(pb.AcceptRequest(session_id=session, category_id="stem"))).annotation
    assert scene.mask[int(stem.shape.point.y), int(stem.shape.point.x)]


async def test_degenerate_prompts_get_precise_statuses(desk: Desk) -> None:
    unknown = pb.OpenSessionRequest(image_id="0" * 64)
    assert await _code(desk.stub.OpenSession(unknown)) is grpc.StatusCode.NOT_FOUND
    assert await _code(desk.stub.OpenSession(pb.OpenSessionRequest())) is grpc.StatusCode.INVALID_ARGUMENT
    wrong_backend = pb.OpenSessionRequest(image_id=desk.image_ids[0], backend="magic")
    assert await _code(desk.stub.OpenSession(wrong_backend)) is grpc.StatusCode.INVALID_ARGUMENT
    no_sam = pb.OpenSessionRequest(image_id=desk.image_ids[0], backend="sam")
    assert await _code(desk.stub.OpenSession(no_sam)) is grpc.StatusCode.FAILED_PRECONDITION
    gone = pb.PromptRequest(session_id="nope", points=[_point(10, 10)])
    assert await _code(desk.stub.Prompt(gone)) is grpc.StatusCode.NOT_FOUND

    session = await _open(desk, 0)
    bad = {
        "whole image": pb.PromptRequest(session_id=session, box=geometry_pb2.Box(x=0, y=0, width=320, height=240)),
        "zero size": pb.PromptRequest(session_id=session, box=geometry_pb2.Box(x=50, y=50, width=0, height=0)),
        "outside box": pb.PromptRequest(session_id=session, box=geometry_pb2.Box(x=400, y=10, width=20, height=20)),
        "point outside": pb.PromptRequest(session_id=session, points=[_point(-3, 10)]),
        "point far outside": pb.PromptRequest(session_id=session, points=[_point(100, 240)]),
        "not a number": pb.PromptRequest(session_id=session, points=[_point(float("nan"), 10)]),
        "only negative": pb.PromptRequest(session_id=session, points=[_point(10, 10, positive=False)]),
        "empty": pb.PromptRequest(session_id=session),
    }
    for name, request in bad.items():
        assert await _code(desk.stub.Prompt(request)) is grpc.StatusCode.INVALID_ARGUMENT, name
    assert await _code(desk.stub.Accept(pb.AcceptRequest(session_id=session))) is grpc.StatusCode.FAILED_PRECONDITION

    # None of that changed the session: it still works.
    scene = desk.scenes[0]
    fine = await desk.stub.Prompt(pb.PromptRequest(session_id=session, box=_box(*scene.box)))
    assert fine.prompt_count == 1
    # A whole-image box is usable once a negative click gives GrabCut background to learn from.
    whole = geometry_pb2.Box(x=0, y=0, width=320, height=240)
    request = pb.PromptRequest(session_id=session, box=whole, points=[_point(3, 3, positive=False)])
    assert (await desk.stub.Prompt(request)).prompt_count == 3
    no_category = pb.AcceptRequest(session_id=session)
    assert await _code(desk.stub.Accept(no_category)) is grpc.StatusCode.INVALID_ARGUMENT
    unknown_category = pb.AcceptRequest(session_id=session, category_id="tree")
    assert await _code(desk.stub.Accept(unknown_category)) is grpc.StatusCode.INVALID_ARGUMENT
