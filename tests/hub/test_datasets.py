"""Dataset import and export: COCO and YOLO zips, round trips, unsafe and corrupted archives."""

from __future__ import annotations

import hashlib
import io
import json
import re
import stat
import subprocess
import time
import zipfile
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import yaml

from tests.bombs import zero_entries
from tests.harness import VISIONLOOP, base_env, serve
from tests.hub.conftest import HubClient
from tests.hub.pictures import picture
from visionloop.common.v1 import category_pb2, image_pb2, transfer_pb2
from visionloop.loop.v1 import annotation_service_pb2 as pb
from visionloop.loop.v1 import image_service_pb2
from visionloop.loop.v1 import project_service_pb2 as ppb
from visionloop.runtime.errors import InvalidArgument
from visionloop.server.hub.datasets import Archive, Dataset, read_dataset, yaml_names

MIB = 1024 * 1024
COCO = pb.DATASET_FORMAT_COCO
YOLO = pb.DATASET_FORMAT_YOLO


# --- archives ---------------------------------------------------------------------------------


def make_zip(files: dict[str, bytes | str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def coco_doc(
    images: list[tuple[str, int, int]], annotations: list[tuple[int, int, list[float]]], names: list[str]
) -> dict[str, Any]:
    """images: (file_name, width, height) with ids 1..; annotations: (image id, category id, bbox)."""
    return {
        "images": [{"id": i, "file_name": f, "width": w, "height": h} for i, (f, w, h) in enumerate(images, 1)],
        "categories": [{"id": i, "name": n} for i, n in enumerate(names, 1)],
        "annotations": [
            {"id": i, "image_id": image, "category_id": cat, "bbox": bbox, "iscrowd": 0}
            for i, (image, cat, bbox) in enumerate(annotations, 1)
        ],
    }


def generated_coco(count: int, names: list[str], width: int = 32, height: int = 24) -> tuple[bytes, dict[str, Any]]:
    """``count`` distinct pictures with 1-4 boxes each (coordinates with two decimals)."""
    rng = np.random.default_rng(7)
    files: dict[str, bytes | str] = {}
    images, annotations = [], []
    for index in range(1, count + 1):
        name = f"img_{index:05d}.jpg"
        files[f"images/{name}"] = picture(index, width, height)
        images.append((name, width, height))
        for _ in range(int(rng.integers(1, 5))):
            x, y = round(float(rng.uniform(0, width - 4)), 2), round(float(rng.uniform(0, height - 4)), 2)
            w, h = round(float(rng.uniform(1, width - x)), 2), round(float(rng.uniform(1, height - y)), 2)
            annotations.append((index, int(rng.integers(1, len(names) + 1)), [x, y, w, h]))
    doc = coco_doc(images, annotations, names)
    files["annotations.json"] = json.dumps(doc)
    return make_zip(files), doc


def coco_labels(data: bytes) -> Counter[tuple[str, str, tuple[float, ...]]]:
    """(image sha256, category name, bbox) of every annotation of a COCO zip, as a multiset.

    Reads this file's test archives (annotations.json, images/) and exports (datumaro's layout:
    annotations/instances_<subset>.json, images/<subset>/).
    """
    found: Counter[tuple[str, str, tuple[float, ...]]] = Counter()
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for json_name in [n for n in archive.namelist() if n.endswith(".json")]:
            doc = json.loads(archive.read(json_name))
            folder = "images/" + json_name.removeprefix("annotations/instances_").removesuffix(".json")
            if "/" not in json_name:
                folder = "images"
            names = {c["id"]: c["name"] for c in doc["categories"]}
            shas = {
                i["id"]: hashlib.sha256(archive.read(f"{folder}/{i['file_name']}")).hexdigest() for i in doc["images"]
            }
            found.update((shas[a["image_id"]], names[a["category_id"]], tuple(a["bbox"])) for a in doc["annotations"])
    return found


def export_doc(data: bytes, subset: str = "default") -> dict[str, Any]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return json.loads(archive.read(f"annotations/instances_{subset}.json"))


# --- transfers --------------------------------------------------------------------------------


def import_messages(
    ref: ppb.ProjectRef, fmt: int, data: bytes, tags: tuple[str, ...] = (), corrupt: int | None = None
) -> list[pb.ImportDatasetRequest]:
    blob = transfer_pb2.BlobHeader(name="dataset.zip", size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
    messages = [pb.ImportDatasetRequest(header=pb.ImportDatasetHeader(ref=ref, format=fmt, blob=blob, tags=tags))]
    for index, offset in enumerate(range(0, len(data), MIB)):
        piece = data[offset : offset + MIB]
        if index == corrupt:
            piece = bytes([piece[0] ^ 0xFF]) + piece[1:]
        messages.append(pb.ImportDatasetRequest(chunk=transfer_pb2.BlobChunk(offset=offset, data=piece)))
    return messages


async def stream(messages: list[pb.ImportDatasetRequest]) -> AsyncIterator[pb.ImportDatasetRequest]:
    for message in messages:
        yield message


async def import_zip(
    hub: HubClient, ref: ppb.ProjectRef, data: bytes, fmt: int = COCO, tags: tuple[str, ...] = ()
) -> pb.ImportDatasetResponse:
    return await hub.annotations.ImportDataset(stream(import_messages(ref, fmt, data, tags)))


async def export_zip(hub: HubClient, ref: ppb.ProjectRef, fmt: int = COCO) -> bytes:
    header: transfer_pb2.BlobHeader | None = None
    buffer = bytearray()
    async for message in hub.annotations.ExportDataset(pb.ExportDatasetRequest(ref=ref, format=fmt)):
        if message.HasField("header"):
            header = message.header
        else:
            assert message.chunk.offset == len(buffer)
            buffer.extend(message.chunk.data)
    assert header is not None
    assert header.size_bytes == len(buffer)
    assert header.sha256 == hashlib.sha256(buffer).hexdigest()
    return bytes(buffer)


async def list_images(hub: HubClient, ref: ppb.ProjectRef, **filters: Any) -> list[image_pb2.ImageMetadata]:
    request = image_service_pb2.ListImagesRequest(
        ref=ref, page_size=1000, filter=image_service_pb2.ImageFilter(**filters)
    )
    return list((await hub.images.ListImages(request)).images)


async def categories(hub: HubClient, ref: ppb.ProjectRef) -> list[category_pb2.Category]:
    return list((await hub.projects.ListCategories(ppb.ListCategoriesRequest(ref=ref))).categories)


def spool_is_empty(hub: HubClient) -> bool:
    return not any(hub.hub.spool.iterdir())


# --- tests ------------------------------------------------------------------------------------


async def test_coco_round_trip_of_1000_images(hub: HubClient, project: ppb.ProjectRef) -> None:
    data, doc = generated_coco(1000, ["weed", "stem", "stone"])
    started = time.monotonic()
    result = await import_zip(hub, project, data, tags=("field-3",))
    imported = time.monotonic()
    assert (result.images_added, result.images_duplicate, result.images_skipped) == (1000, 0, 0)
    assert result.annotations_added == len(doc["annotations"])
    assert result.categories_added == 3
    assert list(result.warnings) == []

    exported = await export_zip(hub, project)
    print(f"import {imported - started:.1f}s, export {time.monotonic() - imported:.1f}s")
    assert coco_labels(exported) == coco_labels(data)
    assert [c.name for c in await categories(hub, project)] == ["weed", "stem", "stone"]

    stored = await list_images(hub, project, tags=["field-3"])
    assert len(stored) == 1000
    assert {(m.state, m.source) for m in stored} == {(image_pb2.IMAGE_STATE_COMPLETE, "import:coco")}
    listed = await hub.annotations.ListAnnotations(pb.ListAnnotationsRequest(ref=project, image_id=stored[0].id))
    assert {a.creator.person for a in listed.annotations} == {"import:coco"}
    assert spool_is_empty(hub)


async def test_reimport_counts_duplicates_and_adds_nothing(hub: HubClient, project: ppb.ProjectRef) -> None:
    data, doc = generated_coco(5, ["weed"])
    first = await import_zip(hub, project, data)
    assert (first.images_added, first.annotations_added) == (5, len(doc["annotations"]))

    # The same archive again, plus a copy of one picture under a second name with one new box.
    again = json.loads(json.dumps(doc))
    again["images"].append({"id": 99, "file_name": "copy.jpg", "width": 32, "height": 24})
    again["annotations"].append({"id": 999, "image_id": 99, "category_id": 1, "bbox": [1, 2, 3, 4]})
    files: dict[str, bytes | str] = {f"images/{i['file_name']}": picture(i["id"], 32, 24) for i in doc["images"]}
    files["images/copy.jpg"] = picture(1, 32, 24)
    files["annotations.json"] = json.dumps(again)
    second = await import_zip(hub, project, make_zip(files), tags=("again",))
    assert (second.images_added, second.images_duplicate, second.annotations_added) == (0, 6, 1)
    assert second.categories_added == 0
    assert len(await list_images(hub, project, tags=["again"])) == 5
    exported = coco_labels(await export_zip(hub, project))
    assert sum(exported.values()) == len(doc["annotations"]) + 1


async def test_yolo_round_trip(hub: HubClient, project: ppb.ProjectRef) -> None:
    sizes = [(32, 24), (40, 30), (64, 48), (20, 20)]
    files: dict[str, bytes | str] = {
        "dataset/data.yaml": "path: .\ntrain: images/train\nnames:\n  - weed\n  - 'stem'\n"
    }
    expected: set[tuple[str, str, tuple[float, ...]]] = set()
    for index, (width, height) in enumerate(sizes):
        image = picture(100 + index, width, height, fmt="PNG" if index == 1 else "JPEG")
        suffix = "png" if index == 1 else "jpg"
        files[f"dataset/images/train/p{index}.{suffix}"] = image
        if index == 3:
            continue  # no label file: an image without objects
        lines = [(index % 2, 0.5, 0.5, 0.25, 0.5), (1, 0.2, 0.3, 0.1, 0.2)]
        files[f"dataset/labels/train/p{index}.txt"] = "".join(f"{c} {x} {y} {w} {h}\n" for c, x, y, w, h in lines)
        sha = hashlib.sha256(image).hexdigest()
        expected |= {(sha, ["weed", "stem"][c], (x, y, w, h)) for c, x, y, w, h in lines}

    result = await import_zip(hub, project, make_zip(files), fmt=YOLO)
    assert (result.images_added, result.annotations_added, result.categories_added) == (4, 6, 2)
    assert {(m.state, tuple(m.tags)) for m in await list_images(hub, project)} == {
        (image_pb2.IMAGE_STATE_COMPLETE, ("train",))
    }

    exported = await export_zip(hub, project, YOLO)
    found: set[tuple[str, str, tuple[float, ...]]] = set()
    with zipfile.ZipFile(io.BytesIO(exported)) as archive:
        names = yaml_names(archive.read("data.yaml").decode(), "data.yaml")
        assert names == ["weed", "stem"]
        # Ultralytics: train and val folders beside data.yaml (no relative path: it would resolve
        # under Ultralytics' own datasets folder), names as an index map
        doc = yaml.safe_load(archive.read("data.yaml"))
        assert doc == {"train": "images/train", "val": "images/train", "nc": 2, "names": {0: "weed", 1: "stem"}}
        images = [n for n in archive.namelist() if n.startswith("images/") and not n.endswith("/")]
        assert len(images) == 4
        for name in images:
            sha = hashlib.sha256(archive.read(name)).hexdigest()
            assert name.startswith(f"images/train/{sha}.")  # the subset of images/train/ in the import
            for line in archive.read(f"labels/train/{sha}.txt").decode().splitlines():
                c, *values = line.split()
                found.add((sha, names[int(c)], tuple(round(float(v), 4) for v in values)))
    assert found == expected

    # The YOLO export imports again as duplicates.
    again = await import_zip(hub, project, exported, fmt=YOLO)
    assert (again.images_added, again.images_duplicate, again.categories_added) == (0, 4, 0)


async def test_yolo_segmentation_lines_keep_their_outlines(hub: HubClient, project: ppb.ProjectRef) -> None:
    files: dict[str, bytes | str] = {
        "data.yaml": "names: [leaf, weed]\n",
        "images/valid/a.png": picture(1, 40, 20, fmt="PNG"),
        "labels/valid/a.txt": "0 0.1 0.1 0.5 0.1 0.3 0.9\n1 0.5 0.5 0.2 0.4\n",
    }
    result = await import_zip(hub, project, make_zip(files), fmt=YOLO)
    assert (result.annotations_added, list(result.warnings)) == (2, [])
    assert {(c.name, c.type) for c in await categories(hub, project)} == {
        ("leaf", category_pb2.CATEGORY_TYPE_SEGMENTATION),
        ("weed", category_pb2.CATEGORY_TYPE_BOX),
    }
    (image,) = await list_images(hub, project)
    assert list(image.tags) == ["test", "valid"]  # Roboflow's valid subset is held out
    listed = await hub.annotations.ListAnnotations(pb.ListAnnotationsRequest(ref=project, image_id=image.id))
    leaf = next(a for a in listed.annotations if a.category_name == "leaf")
    assert [(round(p.x, 3), round(p.y, 3)) for p in leaf.shape.polygon.points] == [(4, 2), (20, 2), (12, 18)]


async def test_archive_escaping_with_dotdot_is_refused(hub: HubClient, project: ppb.ProjectRef) -> None:
    data, _ = generated_coco(2, ["weed"])
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        files: dict[str, bytes | str] = {n: archive.read(n) for n in archive.namelist()}
    files["../evil.jpg"] = picture(9)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await import_zip(hub, project, make_zip(files))
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "'../evil.jpg'" in caught.value.details()
    assert "'..'" in caught.value.details()
    assert await list_images(hub, project) == []
    assert spool_is_empty(hub)


async def test_corrupted_chunk_is_data_loss_and_imports_nothing(hub: HubClient, project: ppb.ProjectRef) -> None:
    data, _ = generated_coco(30, ["weed"], 256, 192)  # big enough for two chunks
    assert len(data) > MIB
    messages = import_messages(project, COCO, data, corrupt=1)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await hub.annotations.ImportDataset(stream(messages))
    assert caught.value.code() is grpc.StatusCode.DATA_LOSS
    assert "sha256" in caught.value.details()
    assert await list_images(hub, project) == []
    assert await categories(hub, project) == []
    assert spool_is_empty(hub)


async def test_broken_image_is_skipped_and_counted(hub: HubClient, project: ppb.ProjectRef) -> None:
    good = [picture(i, 32, 24) for i in range(3)]
    broken = picture(3, 32, 24)[:60]  # truncated JPEG
    files: dict[str, bytes | str] = {f"images/{i}.jpg": data for i, data in enumerate([*good, broken])}
    images = [(f"{i}.jpg", 32, 24) for i in range(4)]
    boxes = [(i, 1, [1.0, 1.0, 5.0, 5.0]) for i in range(1, 5)]
    files["annotations/instances_default.json"] = json.dumps(coco_doc(images, boxes, ["weed"]))
    result = await import_zip(hub, project, make_zip(files))
    assert (result.images_added, result.images_skipped, result.annotations_added) == (3, 1, 3)
    assert len(result.warnings) == 1
    assert "images/3.jpg" in result.warnings[0]
    assert len(await list_images(hub, project)) == 3


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"readme.txt": "hello"}, "no COCO JSON found"),
        ({"annotations.json": "{not json"}, "annotations.json is not valid JSON"),
        ({"annotations.json": json.dumps(coco_doc([("missing.jpg", 32, 24)], [], ["weed"]))}, "'missing.jpg'"),
        (
            {
                "a.jpg": picture(1, 32, 24),
                "annotations.json": json.dumps(coco_doc([("a.jpg", 32, 24)], [(1, 1, [1, 2, 3])], ["weed"])),
            },
            "annotations[0].bbox must be [x, y, width, height]",
        ),
        (
            {
                "a.jpg": picture(1, 32, 24),
                "annotations.json": json.dumps(coco_doc([("a.jpg", 32, 24)], [(1, 7, [1, 2, 3, 4])], ["weed"])),
            },
            "category_id 7 is not in categories",
        ),
        (
            {
                "a.jpg": picture(1, 32, 24),
                "annotations.json": json.dumps(coco_doc([("a.jpg", 32, 24)], [(1, 1, [40, 2, 3, 4])], ["weed"])),
            },
            "a.jpg: box 0 (weed) lies outside the 32x24 image",
        ),
    ],
    ids=["no-json", "bad-json", "unknown-file", "short-bbox", "unknown-category", "box-outside"],
)
async def test_bad_coco_archives(hub: HubClient, project: ppb.ProjectRef, files: dict[str, Any], message: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await import_zip(hub, project, make_zip(files))
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert message in caught.value.details()
    assert await list_images(hub, project) == []
    assert await categories(hub, project) == []


async def test_segmentation_category_takes_outlines(hub: HubClient, project: ppb.ProjectRef) -> None:
    segmentation = category_pb2.Category(name="leaf", type=category_pb2.CATEGORY_TYPE_SEGMENTATION)
    await hub.projects.CreateCategory(ppb.CreateCategoryRequest(ref=project, category=segmentation))
    doc = coco_doc([("a.jpg", 32, 24)], [(1, 1, [2, 2, 10, 8]), (1, 2, [1, 1, 4, 4])], ["leaf", "weed"])
    doc["annotations"][0]["segmentation"] = [[2, 2, 12, 2, 12, 10]]
    result = await import_zip(
        hub, project, make_zip({"a.jpg": picture(1, 32, 24), "annotations.json": json.dumps(doc)})
    )
    assert (result.annotations_added, result.categories_added) == (2, 1)

    exported = export_doc(await export_zip(hub, project))
    by_name = {c["id"]: c["name"] for c in exported["categories"]}
    leaf = next(a for a in exported["annotations"] if by_name[a["category_id"]] == "leaf")
    assert leaf["segmentation"] == [[2, 2, 12, 2, 12, 10]]
    assert leaf["bbox"] == [2, 2, 10, 8]
    assert leaf["area"] == 40


async def test_point_category_of_the_same_name_is_refused(hub: HubClient, project: ppb.ProjectRef) -> None:
    point = category_pb2.Category(name="weed", type=category_pb2.CATEGORY_TYPE_POINT)
    await hub.projects.CreateCategory(ppb.CreateCategoryRequest(ref=project, category=point))
    data, _ = generated_coco(2, ["weed"])
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await import_zip(hub, project, data)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "'weed' is a point category" in caught.value.details()
    assert await list_images(hub, project) == []


async def test_export_holds_complete_images_only(hub: HubClient, project: ppb.ProjectRef) -> None:
    data, _ = generated_coco(3, ["weed"])
    await import_zip(hub, project, data)
    inbox = image_service_pb2.UploadImageRequest(ref=project, image=image_service_pb2.ImageUpload(data=picture(50)))
    await hub.images.UploadImage(inbox)
    assert len(export_doc(await export_zip(hub, project))["images"]) == 3


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("names: [weed, 'stem', \"big stone\"]\nnc: 3\n", ["weed", "stem", "big stone"]),
        # PyYAML's default dump (supervision, Ultralytics): non-ASCII as escapes, flow style
        ('nc: 2\nnames: ["Bl\\xE4tter", "\\u6742\\u8349"]\n', ["Blätter", "杂草"]),
        ("names:\n  0: '1'\n  1: yes\n", ["1", "True"]),
        ('nc: 2\nnames:\n  0: weed  # a comment\n  1: "st\\u00f6m"\n', ["weed", "stöm"]),
        ("names:\n- weed\n- stem\ntrain: images\n", ["weed", "stem"]),
        ("names: {0: weed, 1: stem}\n", ["weed", "stem"]),
    ],
)
def test_yaml_names(text: str, names: list[str]) -> None:
    assert yaml_names(text, "data.yaml") == names


def test_yaml_names_without_names() -> None:
    with pytest.raises(InvalidArgument, match="no names"):
        yaml_names("nc: 2\n", "data.yaml")


async def test_zip_of_many_small_bombs_is_refused(hub: HubClient, project: ppb.ProjectRef) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await import_zip(hub, project, zero_entries(1024, MIB))
    assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "1024 entries, 1073741824 bytes" in caught.value.details()
    assert "(a zip bomb?)" in caught.value.details()
    assert await list_images(hub, project) == []
    assert spool_is_empty(hub)


async def test_what_a_box_category_cannot_keep_is_reported_per_object(hub: HubClient, project: ppb.ProjectRef) -> None:
    """An outline or mask on a box category keeps its box and says so; other COCO tasks' files are named."""
    box = category_pb2.Category(name="weed", type=category_pb2.CATEGORY_TYPE_BOX)
    await hub.projects.CreateCategory(ppb.CreateCategoryRequest(ref=project, category=box))
    doc = coco_doc([("a.jpg", 32, 24)], [(1, 1, [2, 2, 10, 8]), (1, 1, [0, 0, 4, 3]), (1, 1, [5, 5, 2, 2])], ["weed"])
    doc["annotations"][0]["segmentation"] = [[2, 2, 12, 2, 12, 10]]
    doc["annotations"][1]["segmentation"] = {"size": [24, 32], "counts": [0, 3, 21, 3, 21, 3, 717]}
    doc["annotations"][1]["iscrowd"] = 1
    files: dict[str, bytes | str] = {
        "images/a.jpg": picture(1, 32, 24),
        "annotations/instances_default.json": json.dumps(doc),
        "annotations/captions_default.json": json.dumps({"images": [], "annotations": []}),
    }
    result = await import_zip(hub, project, make_zip(files))
    assert (result.images_added, result.annotations_added) == (1, 3)
    assert sorted(result.warnings) == [
        "annotations/captions_default.json: not read (COCO captions file; VisionLoop imports instances: "
        "boxes and outlines)",
        "images/a.jpg: annotations/instances_default.json annotations[0] (weed): its outline is left out, "
        "'weed' is a box category in the project; its box is kept",
        "images/a.jpg: annotations/instances_default.json annotations[1] (weed): its outline is left out, "
        "'weed' is a box category in the project; its box is kept",
    ]
    image = (await list_images(hub, project))[0]
    listed = await hub.annotations.ListAnnotations(pb.ListAnnotationsRequest(ref=project, image_id=image.id))
    assert sorted((a.shape.WhichOneof("kind"), a.crowd) for a in listed.annotations) == [
        ("box", False),
        ("box", False),
        ("box", True),  # the crowd region stays one
    ]
    exported = export_doc(await export_zip(hub, project))
    assert sorted(a["iscrowd"] for a in exported["annotations"]) == [0, 0, 1]


@pytest.mark.parametrize(
    ("segmentation", "message"),
    [
        (
            {"size": [24, 31], "counts": [744]},
            "annotations[0].segmentation: the RLE's size [24, 31] is not the image's",
        ),
        ({"size": [24, 32], "counts": [700]}, "the runs cover 700 pixels, the mask has 768"),
        ({"size": [24, 32], "counts": "#!"}, "the compressed RLE has the character '#'"),
        ([[1, 1, 5, 1]], "segmentation[0] has 2 points; an outline needs at least 3"),
        ([[1, 1, 5, "x", 3, 3]], "segmentation[0] must be a flat list of x, y numbers"),
    ],
    ids=["rle-size", "rle-runs", "rle-string", "two-points", "not-numbers"],
)
async def test_bad_segmentations_are_refused(
    hub: HubClient, project: ppb.ProjectRef, segmentation: Any, message: str
) -> None:
    doc = coco_doc([("a.jpg", 32, 24)], [(1, 1, [1, 1, 4, 4])], ["leaf"])
    doc["annotations"][0]["segmentation"] = segmentation
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await import_zip(hub, project, make_zip({"a.jpg": picture(1, 32, 24), "annotations.json": json.dumps(doc)}))
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert message in caught.value.details()
    assert await list_images(hub, project) == []


def test_cli_import_and_export(tmp_path: Path) -> None:
    data, _ = generated_coco(20, ["weed", "stem"])
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        files = {n: archive.read(n) for n in archive.namelist()}
    files["images/broken.jpg"] = b"not a jpeg"
    doc = json.loads(files["annotations.json"])
    doc["images"].append({"id": 999, "file_name": "broken.jpg", "width": 32, "height": 24})
    files["annotations.json"] = json.dumps(doc).encode()
    source = tmp_path / "dataset.zip"
    source.write_bytes(make_zip(files))

    with serve("loop", tmp_path) as hub:
        env = base_env(
            tmp_path,
            {"LOOP_HOST": f"127.0.0.1:{hub.ports()['loop']}", "LOOP_ORGANIZATION": "acme", "LOOP_PROJECT": "weeds"},
        )

        def run(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([VISIONLOOP, *args], capture_output=True, text=True, timeout=120, env=env)

        assert run("projects", "create").returncode == 0
        imported = run("import", str(source), "--format", "coco", "--tag", "cli")
        assert imported.returncode == 0, imported.stderr
        assert imported.stdout.strip() == (
            f"20 images added, 0 already there, 1 skipped, {len(doc['annotations'])} annotations, 2 categories created"
        )
        assert "images/broken.jpg: skipped" in imported.stderr

        exported = run("export", str(tmp_path), "--format", "coco")
        assert exported.returncode == 0, exported.stderr
        target = tmp_path / "acme-weeds-coco.zip"
        assert exported.stdout.strip() == f"exported {target}"
        assert coco_labels(target.read_bytes()) == coco_labels(data)

        yolo = run("export", str(tmp_path / "yolo.zip"), "--format", "yolo")
        assert yolo.returncode == 0, yolo.stderr
        with zipfile.ZipFile(tmp_path / "yolo.zip") as archive:
            assert sum(n.startswith("labels/") and n.endswith(".txt") for n in archive.namelist()) == 20


def read_archive(tmp_path: Path, files: dict[str, bytes | str], fmt: int) -> Dataset:
    path = tmp_path / "dataset.zip"
    path.write_bytes(make_zip(files))
    with Archive.open(path) as archive:
        return read_dataset(archive, fmt)


def test_layouts_are_found(tmp_path: Path) -> None:
    # A zipped folder, Finder leftovers, COCO's annotations/ + train2017/ layout.
    doc = coco_doc([("a.jpg", 32, 24)], [(1, 1, [1, 2, 3, 4])], ["weed"])
    files: dict[str, bytes | str] = {
        "coco/annotations/instances_train2017.json": json.dumps(doc),
        "coco/train2017/a.jpg": picture(1, 32, 24),
        "__MACOSX/coco/._a.jpg": b"junk",
    }
    dataset = read_archive(tmp_path, files, COCO)
    assert [(m.path, len(m.labels)) for m in dataset.members] == [("train2017/a.jpg", 1)]

    # Darknet: labels beside the images, names in obj.names.
    files = {"obj.names": "weed\nstem\n", "obj/a.jpg": picture(1), "obj/a.txt": "1 0.5 0.5 0.2 0.2\n"}
    dataset = read_archive(tmp_path, files, YOLO)
    assert dataset.categories == ("weed", "stem")
    assert dataset.members[0].labels[0].category == "stem"


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"images/a.jpg": b""}, "no class names found"),
        ({"classes.txt": "weed\n", "images/a.jpg": b"", "labels/a.txt": "3 0.5 0.5 0.1 0.1\n"}, "class 3 is not one"),
        ({"classes.txt": "weed\n", "images/a.jpg": b"", "labels/a.txt": "0 0.5 0.5\n"}, "labels/a.txt line 1"),
        ({"classes.txt": "weed\n", "labels/a.txt": ""}, "no .jpg or .png images"),
    ],
)
def test_bad_yolo_archives(tmp_path: Path, files: dict[str, bytes | str], message: str) -> None:
    with pytest.raises(InvalidArgument, match=re.escape(message)):
        read_archive(tmp_path, files, YOLO)


def test_symlink_entry_is_refused(tmp_path: Path) -> None:
    link = zipfile.ZipInfo("images/a.jpg")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(link, "/etc/passwd")
    path = tmp_path / "link.zip"
    path.write_bytes(buffer.getvalue())
    with pytest.raises(InvalidArgument, match="is a symbolic link"):
        Archive.open(path)
