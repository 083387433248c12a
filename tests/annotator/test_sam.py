"""The SAM path end to end with a generated ONNX pair that has SAM's signature."""

from __future__ import annotations

import numpy as np

from tests.annotator.conftest import Desk
from visionloop.annotator.v1 import annotator_service_pb2 as pb
from visionloop.common.v1 import geometry_pb2
from visionloop.lib.geometry import mask_iou
from visionloop.server.annotator import masks
from visionloop.server.annotator.sam import SamBackend


async def test_sam_sessions_encode_each_image_once_and_answer_at_image_size(sam_desk: Desk) -> None:
    backend = sam_desk.servicer.backends["sam"]
    assert isinstance(backend, SamBackend)
    scene = sam_desk.scenes[0]
    opened = await sam_desk.stub.OpenSession(pb.OpenSessionRequest(image_id=sam_desk.image_ids[0]))
    assert opened.backend == "sam"  # the default once SAM files are configured
    session = opened.session_id
    centre = masks.centre(scene.mask)
    click = pb.PointPrompt(point=centre, positive=True)
    first = await sam_desk.stub.Prompt(pb.PromptRequest(session_id=session, points=[click]))
    assert (first.proposal.mask.width, first.proposal.mask.height) == (320, 240)
    assert mask_iou(masks.decode_rle(first.proposal.mask), scene.mask) >= 0.8
    x, y, w, h = scene.box
    box = geometry_pb2.Box(x=x, y=y, width=w, height=h)
    second = await sam_desk.stub.Prompt(pb.PromptRequest(session_id=session, box=box, category_id="leaf"))
    assert mask_iou(masks.decode_rle(second.proposal.mask), scene.mask) >= 0.8
    away = pb.PointPrompt(point=geometry_pb2.Point(x=5, y=5), positive=False)
    third = await sam_desk.stub.Prompt(pb.PromptRequest(session_id=session, points=[away]))
    assert third.prompt_count == 3
    assert 0 <= third.proposal.score <= 1

    again = await sam_desk.stub.OpenSession(pb.OpenSessionRequest(image_id=sam_desk.image_ids[0], backend="sam"))
    await sam_desk.stub.Prompt(pb.PromptRequest(session_id=again.session_id, points=[click]))
    assert backend.encodings == 1, "the encoder runs once per image, the decoder once per prompt"

    other = await sam_desk.stub.OpenSession(pb.OpenSessionRequest(image_id=sam_desk.image_ids[1]))
    assert other.backend == "sam"
    assert backend.encodings == 2

    accepted = (await sam_desk.stub.Accept(pb.AcceptRequest(session_id=session, person="anna"))).annotation
    assert accepted.category_id == sam_desk.categories["leaf"].id
    assert len(accepted.shape.polygon.points) >= 3

    classical = await sam_desk.stub.OpenSession(
        pb.OpenSessionRequest(image_id=sam_desk.image_ids[0], backend="classical")
    )
    assert classical.backend == "classical"


def test_masks_in_the_padded_frame_come_back_to_the_original_size(sam_files: tuple) -> None:
    backend = SamBackend(*sam_files)
    image = backend(".", np.zeros((240, 320, 3), np.uint8))
    # A 256 square in the padded frame: the image occupies the top 256 x 192 of it.
    logits = -np.ones((256, 256), np.float32)
    logits[:96, :128] = 1.0  # the top-left quarter of the image
    back = image.to_original(logits) > 0
    assert back.shape == (240, 320)
    assert back[:118, :158].all()
    assert not back[122:, :].any()
    assert not back[:, 162:].any()
