"""What the reference trainer learns from a hub annotation: every shape kind as its box, crowd regions not at all."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from visionloop.common.v1 import annotation_pb2, geometry_pb2
from visionloop.server.trainer.plugin import CategoryInfo, TrainImage
from visionloop.server.trainer.reference.plugin import _samples
from visionloop.testing.synthetic.world import Annotation


def test_outlines_and_masks_train_as_boxes_and_crowd_regions_not_at_all(tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    cv2.imwrite(str(path), np.zeros((8, 10, 3), dtype=np.uint8))

    def outline(*points: tuple[float, float]) -> geometry_pb2.Polygon:
        return geometry_pb2.Polygon(points=[geometry_pb2.Point(x=x, y=y) for x, y in points])

    shapes = [
        (geometry_pb2.Shape(box=geometry_pb2.Box(x=1, y=1, width=2, height=2)), False),
        (geometry_pb2.Shape(box=geometry_pb2.Box(x=0, y=0, width=9, height=7)), True),  # a crowd region
        (
            geometry_pb2.Shape(
                multi_polygon=geometry_pb2.MultiPolygon(
                    polygons=[outline((1, 1), (3, 1), (2, 2)), outline((6, 5), (8, 5), (7, 7))]
                )
            ),
            False,
        ),
        (geometry_pb2.Shape(mask=geometry_pb2.Mask(width=10, height=8, counts=[12, 3, 7, 3, 55])), False),
    ]
    annotations = tuple(
        annotation_pb2.Annotation(category_id="c1", shape=shape, crowd=crowd) for shape, crowd in shapes
    )
    image = TrainImage("a" * 64, path, 10, 8, annotations)

    (sample,) = _samples([image], [CategoryInfo("c1", "leaf", "segmentation")])

    assert sample.annotations == (
        Annotation("leaf", box=(1, 1, 2, 2)),
        Annotation("leaf", box=(1, 1, 7, 6)),
        Annotation("leaf", box=(2, 1, 3, 2)),  # rows 1-2, columns 2-4 of the mask
    )
