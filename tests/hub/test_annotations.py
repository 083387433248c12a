"""Categories with stable ids; annotations of the four kinds; detections kept apart."""

from __future__ import annotations

import grpc
import pytest

from tests.hub.conftest import HubClient
from tests.hub.pictures import picture
from visionloop.common.v1 import annotation_pb2, category_pb2, detection_pb2, geometry_pb2
from visionloop.loop.v1 import annotation_service_pb2 as pb
from visionloop.loop.v1 import image_service_pb2
from visionloop.loop.v1 import project_service_pb2 as ppb

BOX = category_pb2.CATEGORY_TYPE_BOX


async def _category(hub: HubClient, project, name: str, type_: int = BOX) -> category_pb2.Category:
    request = ppb.CreateCategoryRequest(ref=project, category=category_pb2.Category(name=name, type=type_))
    return (await hub.projects.CreateCategory(request)).category


async def _image(hub: HubClient, project, seed: int = 1) -> str:
    request = image_service_pb2.UploadImageRequest(ref=project, image=image_service_pb2.ImageUpload(data=picture(seed)))
    return (await hub.images.UploadImage(request)).metadata.id


def _annotation(image_id: str, category_id: str, shape: geometry_pb2.Shape) -> annotation_pb2.Annotation:
    return annotation_pb2.Annotation(
        image_id=image_id, category_id=category_id, shape=shape, creator=annotation_pb2.Creator(person="anna")
    )


async def test_rename_keeps_references(hub: HubClient, project) -> None:
    weed = await _category(hub, project, "weed")
    image_id = await _image(hub, project)
    shape = geometry_pb2.Shape(box=geometry_pb2.Box(x=1, y=1, width=5, height=5))
    created = (
        await hub.annotations.CreateAnnotation(
            pb.CreateAnnotationRequest(ref=project, annotation=_annotation(image_id, weed.id, shape))
        )
    ).annotation
    renamed = category_pb2.Category(id=weed.id, name="thistle")
    await hub.projects.UpdateCategory(ppb.UpdateCategoryRequest(ref=project, category=renamed))
    listed = await hub.annotations.ListAnnotations(pb.ListAnnotationsRequest(ref=project, image_id=image_id))
    assert [(a.id, a.category_id, a.category_name) for a in listed.annotations] == [(created.id, weed.id, "thistle")]

    changed = category_pb2.Category(id=weed.id, name="thistle", type=category_pb2.CATEGORY_TYPE_POINT)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await hub.projects.UpdateCategory(ppb.UpdateCategoryRequest(ref=project, category=changed))
    assert caught.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await hub.projects.DeleteCategory(ppb.DeleteCategoryRequest(ref=project, category_id=weed.id))
    assert caught.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    deleted = await hub.projects.DeleteCategory(ppb.DeleteCategoryRequest(ref=project, category_id=weed.id, force=True))
    assert deleted.deleted_annotations == 1


async def test_four_kinds_and_shape_checks(hub: HubClient, project) -> None:
    image_id = await _image(hub, project)
    kinds = {
        "box": (BOX, geometry_pb2.Shape(box=geometry_pb2.Box(x=1, y=2, width=3, height=4))),
        "stem": (category_pb2.CATEGORY_TYPE_POINT, geometry_pb2.Shape(point=geometry_pb2.Point(x=10, y=20))),
        "leaf": (
            category_pb2.CATEGORY_TYPE_SEGMENTATION,
            geometry_pb2.Shape(
                polygon=geometry_pb2.Polygon(
                    points=[geometry_pb2.Point(x=1, y=1), geometry_pb2.Point(x=9, y=1), geometry_pb2.Point(x=5, y=8)]
                )
            ),
        ),
        "dry": (category_pb2.CATEGORY_TYPE_CLASSIFICATION, geometry_pb2.Shape(whole_image=geometry_pb2.WholeImage())),
    }
    for name, (type_, shape) in kinds.items():
        category = await _category(hub, project, name, type_)
        await hub.annotations.CreateAnnotation(
            pb.CreateAnnotationRequest(ref=project, annotation=_annotation(image_id, category.id, shape))
        )
    listed = await hub.annotations.ListAnnotations(pb.ListAnnotationsRequest(ref=project, image_id=image_id))
    assert sorted(a.shape.WhichOneof("kind") for a in listed.annotations) == ["box", "point", "polygon", "whole_image"]

    box_category = (await hub.projects.ListCategories(ppb.ListCategoriesRequest(ref=project))).categories[0]
    bad = {
        "need shape.box, got point": geometry_pb2.Shape(point=geometry_pb2.Point(x=1, y=1)),
        "negative size": geometry_pb2.Shape(box=geometry_pb2.Box(x=1, y=1, width=-1, height=1)),
        "outside the 64x48 image": geometry_pb2.Shape(box=geometry_pb2.Box(x=100, y=1, width=1, height=1)),
    }
    for fragment, shape in bad.items():
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await hub.annotations.CreateAnnotation(
                pb.CreateAnnotationRequest(ref=project, annotation=_annotation(image_id, box_category.id, shape))
            )
        assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert fragment in caught.value.details()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await hub.annotations.CreateAnnotation(
            pb.CreateAnnotationRequest(ref=project, annotation=_annotation("f" * 64, box_category.id, kinds["box"][1]))
        )
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND


async def test_segmentations_of_several_outlines_or_a_mask_and_crowd_regions(hub: HubClient, project) -> None:
    image_id = await _image(hub, project)  # 64 x 48
    leaf = await _category(hub, project, "leaf", category_pb2.CATEGORY_TYPE_SEGMENTATION)

    def outline(*points: tuple[float, float]) -> geometry_pb2.Polygon:
        return geometry_pb2.Polygon(points=[geometry_pb2.Point(x=x, y=y) for x, y in points])

    two = geometry_pb2.Shape(
        multi_polygon=geometry_pb2.MultiPolygon(
            polygons=[outline((1, 1), (9, 1), (5, 8)), outline((20, 20), (30, 20), (25, 30))]
        )
    )
    mask = geometry_pb2.Shape(mask=geometry_pb2.Mask(width=64, height=48, counts=[100, 20, 64 * 48 - 120]))
    for shape, crowd in ((two, False), (mask, True)):
        annotation = _annotation(image_id, leaf.id, shape)
        annotation.crowd = crowd
        await hub.annotations.CreateAnnotation(pb.CreateAnnotationRequest(ref=project, annotation=annotation))
    listed = await hub.annotations.ListAnnotations(pb.ListAnnotationsRequest(ref=project, image_id=image_id))
    assert {(a.shape.SerializeToString(), a.crowd) for a in listed.annotations} == {
        (two.SerializeToString(), False),
        (mask.SerializeToString(), True),
    }

    # an update without a shape keeps the crowd flag; one with a shape sets it
    crowd_id = next(a.id for a in listed.annotations if a.crowd)
    update = annotation_pb2.Annotation(id=crowd_id, creator=annotation_pb2.Creator(person="bo"))
    updated = await hub.annotations.UpdateAnnotation(pb.UpdateAnnotationRequest(ref=project, annotation=update))
    assert updated.annotation.crowd
    update.shape.CopyFrom(two)
    updated = await hub.annotations.UpdateAnnotation(pb.UpdateAnnotationRequest(ref=project, annotation=update))
    assert not updated.annotation.crowd

    bad = {
        "mask is 32x48; it must be the image's 64x48": geometry_pb2.Mask(width=32, height=48, counts=[32 * 48]),
        "runs cover 100 pixels, the image has 3072": geometry_pb2.Mask(width=64, height=48, counts=[100]),
    }
    for fragment, wrong in bad.items():
        shape = geometry_pb2.Shape(mask=wrong)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await hub.annotations.CreateAnnotation(
                pb.CreateAnnotationRequest(ref=project, annotation=_annotation(image_id, leaf.id, shape))
            )
        assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert fragment in caught.value.details()
    empty = geometry_pb2.Shape(multi_polygon=geometry_pb2.MultiPolygon())
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await hub.annotations.CreateAnnotation(
            pb.CreateAnnotationRequest(ref=project, annotation=_annotation(image_id, leaf.id, empty))
        )
    assert "multi_polygon has no polygons" in caught.value.details()


async def test_update_delete_and_detections_apart(hub: HubClient, project) -> None:
    weed = await _category(hub, project, "weed")
    image_id = await _image(hub, project)
    shape = geometry_pb2.Shape(box=geometry_pb2.Box(x=1, y=1, width=5, height=5))
    created = (
        await hub.annotations.CreateAnnotation(
            pb.CreateAnnotationRequest(ref=project, annotation=_annotation(image_id, weed.id, shape))
        )
    ).annotation
    moved = annotation_pb2.Annotation(
        id=created.id, shape=geometry_pb2.Shape(box=geometry_pb2.Box(x=2, y=2, width=6, height=6))
    )
    updated = (
        await hub.annotations.UpdateAnnotation(pb.UpdateAnnotationRequest(ref=project, annotation=moved))
    ).annotation
    assert updated.shape.box.width == 6
    assert updated.creator.person == "anna"

    def detections(version: str, confidence: float) -> detection_pb2.Detections:
        return detection_pb2.Detections(
            boxes=[
                detection_pb2.BoxDetection(
                    category_id=weed.id,
                    category_name="weed",
                    confidence=confidence,
                    model_version=version,
                    box=geometry_pb2.Box(x=1, y=1, width=2, height=2),
                )
            ],
            classifications=[
                detection_pb2.ClassificationDetection(
                    category_id=weed.id, category_name="weed", confidence=0.5, model_version=version
                )
            ],
        )

    await hub.annotations.PutDetections(
        pb.PutDetectionsRequest(ref=project, image_id=image_id, detections=detections("1.0", 0.3))
    )
    await hub.annotations.PutDetections(
        pb.PutDetectionsRequest(ref=project, image_id=image_id, detections=detections("1.1", 0.8))
    )
    await hub.annotations.PutDetections(
        pb.PutDetectionsRequest(ref=project, image_id=image_id, detections=detections("1.1", 0.9))
    )
    every = (await hub.annotations.GetDetections(pb.GetDetectionsRequest(ref=project, image_id=image_id))).detections
    assert sorted(round(b.confidence, 2) for b in every.boxes) == [0.3, 0.9]
    latest = (
        await hub.annotations.GetDetections(
            pb.GetDetectionsRequest(ref=project, image_id=image_id, model_version="1.1")
        )
    ).detections
    assert [round(b.confidence, 2) for b in latest.boxes] == [0.9]
    # Detections never show up as annotations.
    listed = await hub.annotations.ListAnnotations(pb.ListAnnotationsRequest(ref=project, image_id=image_id))
    assert len(listed.annotations) == 1

    bad = detection_pb2.Detections(
        boxes=[detection_pb2.BoxDetection(category_id=weed.id, confidence=1.5, model_version="1.1")]
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await hub.annotations.PutDetections(pb.PutDetectionsRequest(ref=project, image_id=image_id, detections=bad))
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT

    await hub.annotations.DeleteAnnotation(pb.DeleteAnnotationRequest(ref=project, annotation_id=created.id))
    assert not (
        await hub.annotations.ListAnnotations(pb.ListAnnotationsRequest(ref=project, image_id=image_id))
    ).annotations
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await hub.annotations.DeleteAnnotation(pb.DeleteAnnotationRequest(ref=project, annotation_id=created.id))
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND


async def test_project_validation(hub: HubClient) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await hub.projects.CreateProject(
            ppb.CreateProjectRequest(project=ppb.Project(ref=ppb.ProjectRef(organization="Acme Inc", project="x")))
        )
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await hub.projects.GetProject(ppb.GetProjectRequest(ref=ppb.ProjectRef(organization="acme", project="ghost")))
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND
