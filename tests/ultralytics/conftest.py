"""Ultralytics' own exports, made once per test session (and kept in pytest's cache between runs
while make_exports.py and the pins stay the same) by tests/ultralytics/make_exports.py in
.venv-ultralytics (scripts/bootstrap builds it)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import grpc
import pytest

from tests.detector.conftest import (
    REF,
    Hub,
    hub,  # noqa: F401  (the real hub the detector tests use)
)
from tests.trainer.conftest import (
    IMAGES,
    WORLD,
    Project,
    project,  # noqa: F401  (a hub with an annotated project, for the trainer plug-in)
)
from visionloop.client.loop import LoopClient
from visionloop.common.v1 import annotation_pb2, category_pb2, geometry_pb2, image_pb2
from visionloop.lib.training_data import Sample
from visionloop.loop.v1 import image_service_pb2, project_service_pb2
from visionloop.loop.v1 import project_service_pb2_grpc as project_grpc
from visionloop.testing.ports import free_port
from visionloop.testing.synthetic import world
from visionloop.testing.synthetic.seeding import PERSON, ensure_categories, jpeg

HERE = Path(__file__).resolve().parent
PYTHON = HERE.parents[1] / ".venv-ultralytics" / "bin" / "python"


@dataclass(frozen=True)
class Exports:
    folder: Path
    predictions: dict[str, dict[str, Any]]  # export name -> frame file name -> Ultralytics' answer

    def onnx(self, name: str) -> Path:
        return self.folder / f"{name}.onnx"

    def frames(self) -> list[Path]:
        return sorted((self.folder / "frames").glob("*.png"))


def _key() -> str:
    digest = hashlib.sha256()
    for name in ("make_exports.py", "requirements.txt"):
        digest.update((HERE / name).read_bytes())
    return digest.hexdigest()[:16]


@pytest.fixture(scope="session")
def exports(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Exports:
    if not PYTHON.exists():
        raise RuntimeError(f"{PYTHON} is missing: run scripts/bootstrap, which installs Ultralytics there")
    cache = pytestconfig.cache
    folder = cache.mkdir(f"ultralytics-exports-{_key()}") if cache is not None else tmp_path_factory.mktemp("exports")
    if not (folder / "predictions.json").is_file():
        shutil.rmtree(folder, ignore_errors=True)
        env = {**os.environ, "YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "0", "YOLO_CONFIG_DIR": str(folder / "config")}
        done = subprocess.run(
            [str(PYTHON), str(HERE / "make_exports.py"), str(folder)],
            capture_output=True,
            text=True,
            timeout=1500,
            env=env,
        )
        if done.returncode != 0:
            raise RuntimeError(f"make_exports.py failed:\n{done.stdout[-2000:]}\n{done.stderr[-6000:]}")
    return Exports(folder, json.loads((folder / "predictions.json").read_text()))


OUTLINED = "weed"  # the segmentation category of ``segment_project``


def outlines(sample: Sample, category: category_pb2.Category) -> list[annotation_pb2.Annotation]:
    """A polygon per weed of a synthetic frame: the ellipse its box bounds (the field draws weeds as
    round blobs), clipped to the frame; stems, which are points, have no outline."""
    height, width = sample.image.shape[:2]
    result = []
    for annotation in sample.annotations:
        if annotation.category != world.WEED or annotation.box is None:
            continue
        x, y, w, h = annotation.box
        centre, axes = (round(x + w / 2), round(y + h / 2)), (max(1, round(w / 2)), max(1, round(h / 2)))
        polygon = cv2.ellipse2Poly(centre, axes, 0, 0, 360, 15).clip(0, [width, height])
        points = [geometry_pb2.Point(x=float(px), y=float(py)) for px, py in polygon]
        shape = geometry_pb2.Shape(polygon=geometry_pb2.Polygon(points=points))
        creator = annotation_pb2.Creator(person=PERSON)
        result.append(annotation_pb2.Annotation(category_id=category.id, shape=shape, creator=creator))
    return result


def _seed_outlines(target: str) -> tuple[dict[str, category_pb2.Category], list[str]]:
    with LoopClient(target, REF.organization, REF.project) as client:
        categories = ensure_categories(client, [(OUTLINED, "segmentation")])
        ids = []
        for sample in world.generate_samples(IMAGES, seed=5, config=WORLD):
            upload = image_service_pb2.ImageUpload(
                data=jpeg(sample),
                metadata=image_pb2.ImageMetadata(source="synthetic", state=image_pb2.IMAGE_STATE_COMPLETE),
                annotations=outlines(sample, categories[OUTLINED]),
            )
            request = image_service_pb2.UploadImageRequest(ref=client.ref, image=upload)
            ids.append(client.images.UploadImage(request, timeout=client.timeout).metadata.id)
        return categories, ids


@pytest.fixture
async def segment_project(tmp_path: Path) -> AsyncIterator[Project]:
    """A real hub whose project has one segmentation category, its weeds outlined by polygons."""
    server = Hub(tmp_path / "hub", free_port())
    await server.start()
    target = f"127.0.0.1:{server.settings.port}"
    async with grpc.aio.insecure_channel(target) as channel:
        await project_grpc.ProjectServiceStub(channel).CreateProject(
            project_service_pb2.CreateProjectRequest(project=project_service_pb2.Project(ref=REF))
        )
        categories, ids = await asyncio.to_thread(_seed_outlines, target)
        yield Project(server, categories, ids, channel)
    await server.stop()
