"""Label Studio as the labelling UI, against a real Label Studio (tests/annotator/studio.py).

Each test has its own hub and annotator (with the bridge) and makes its own Label Studio project
with ``visionloop label-studio sync-project``; Label Studio is started once per session. Label
Studio calls the bridge while the tests' calls to it are in flight, so those calls run in threads.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from click.testing import CliRunner

from tests.annotator import shapes
from tests.annotator.conftest import Desk, open_desk
from tests.annotator.studio import VENV, Studio
from tests.detector.conftest import REF, upload
from visionloop.cli.main import cli
from visionloop.common.v1 import detection_pb2, geometry_pb2, image_pb2
from visionloop.lib import shapes as hub_shapes
from visionloop.lib.geometry import mask_iou
from visionloop.loop.v1 import annotation_service_pb2, image_service_pb2
from visionloop.runtime.config import ConfigError, PeerSettings, load_settings
from visionloop.server.annotator import masks
from visionloop.server.annotator.config import AnnotatorSettings
from visionloop.server.annotator.labelstudio import brush
from visionloop.server.trainer.hub_client import COMPLETE, TrainerHub
from visionloop.testing.frames import frame, jpeg

TOKEN = "bridge-secret-0123456789"
DEADLINE = 60.0


@pytest.fixture
async def bridge_desk(tmp_path: Path) -> AsyncIterator[Desk]:
    async with open_desk(tmp_path, label_studio_port=0, label_studio_token=TOKEN) as ready:
        yield ready


def bridge_url(desk: Desk) -> str:
    assert desk.servicer.label_studio is not None
    return f"http://127.0.0.1:{desk.servicer.label_studio.port}"


async def ls(studio: Studio, method: str, path: str, **kwargs: Any) -> Any:
    """A Label Studio API call as a user's script makes it (in a thread: Label Studio calls the bridge)."""

    def send() -> Any:
        with studio.api() as session:
            answer = session.request(method, f"{studio.url}{path}", timeout=120, **kwargs)
            assert answer.status_code < 400, f"{method} {path}: {answer.status_code} {answer.text[:500]}"
            return answer.json() if answer.content else None

    return await asyncio.to_thread(send)


async def bridge(desk: Desk, method: str, path: str, body: Any = None, auth: Any = ("labelstudio", TOKEN)) -> Any:
    def send() -> requests.Response:
        data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        return requests.request(method, f"{bridge_url(desk)}{path}", data=data, auth=auth, headers=headers, timeout=30)

    return await asyncio.to_thread(send)


async def until(check: Callable[[], Any], what: str) -> Any:
    deadline = time.monotonic() + DEADLINE
    while True:
        found = await check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {DEADLINE:.0f} s: {what}")
        await asyncio.sleep(0.2)


async def sync(desk: Desk, studio: Studio, title: str) -> int:
    """``visionloop label-studio sync-project``, as an operator runs it; the Label Studio project id."""
    env = {
        "LOOP_HOST": desk.hub_target,
        "LOOP_ORGANIZATION": REF.organization,
        "LOOP_PROJECT": REF.project,
        "LABEL_STUDIO_URL": studio.url,
        "LABEL_STUDIO_API_KEY": studio.token,
        "LABEL_STUDIO_BRIDGE_URL": bridge_url(desk),
        "LABEL_STUDIO_BRIDGE_TOKEN": TOKEN,
    }
    args = ["label-studio", "sync-project", "--title", title]
    done = await asyncio.to_thread(CliRunner().invoke, cli, args, env=env, catch_exceptions=False)
    assert done.exit_code == 0, done.output
    projects = await ls(studio, "GET", "/api/projects", params={"title": title})
    (project,) = [p for p in projects["results"] if p["title"] == title]
    return int(project["id"])


async def tasks(studio: Studio, project: int) -> list[dict[str, Any]]:
    listed = await ls(studio, "GET", "/api/tasks", params={"project": project, "page_size": 1000, "fields": "all"})
    return sorted(listed["tasks"], key=lambda t: t["id"])


async def set_queue(desk: Desk, priorities: dict[str, float]) -> None:
    with desk.client() as client:
        for image_id, priority in priorities.items():
            request = image_service_pb2.UpdateImageRequest(
                ref=REF, image_id=image_id, priority=priority, state=image_pb2.IMAGE_STATE_ANNOTATE
            )
            await asyncio.to_thread(client.images.UpdateImage, request)


async def hub_annotations(desk: Desk, image_id: str) -> list[Any]:
    with desk.client() as client:
        request = annotation_service_pb2.ListAnnotationsRequest(ref=REF, image_id=image_id)
        return list((await asyncio.to_thread(client.annotations.ListAnnotations, request)).annotations)


async def state(desk: Desk, image_id: str) -> int:
    with desk.client() as client:
        request = image_service_pb2.GetImageRequest(ref=REF, image_id=image_id)
        return (await asyncio.to_thread(client.images.GetImage, request)).metadata.state


def pct(value: float, size: int) -> float:
    return value * 100.0 / size


W, H = shapes.WIDTH, shapes.HEIGHT


def rectangle(region_id: str, label: str, x: float, y: float, w: float, h: float) -> dict[str, Any]:
    value = {"x": pct(x, W), "y": pct(y, H), "width": pct(w, W), "height": pct(h, H), "rotation": 0}
    return _region(region_id, "box", "rectanglelabels", label, value)


def keypoint(region_id: str, label: str, x: float, y: float, control: str = "point") -> dict[str, Any]:
    return _region(region_id, control, "keypointlabels", label, {"x": pct(x, W), "y": pct(y, H), "width": 0.5})


def polygon(region_id: str, label: str, points: list[tuple[float, float]]) -> dict[str, Any]:
    value = {"points": [[pct(x, W), pct(y, H)] for x, y in points], "closed": True}
    return _region(region_id, "polygon", "polygonlabels", label, value)


def brushed(region_id: str, label: str, mask: np.ndarray) -> dict[str, Any]:
    return _region(region_id, "mask", "brushlabels", label, {"format": "rle", "rle": brush.encode(mask)})


def _region(region_id: str, control: str, kind: str, label: str, value: dict[str, Any]) -> dict[str, Any]:
    value[kind] = [label]
    return {
        "id": region_id,
        "from_name": control,
        "to_name": "image",
        "type": kind,
        "original_width": W,
        "original_height": H,
        "image_rotation": 0,
        "value": value,
        "origin": "manual",
    }


def geometry(annotation: Any) -> tuple[str, Any]:
    """A hub annotation as (category, plain geometry) for exact comparison."""
    shape = annotation.shape
    kind = shape.WhichOneof("kind")
    if kind == "box":
        return annotation.category_name, ("box", shape.box.x, shape.box.y, shape.box.width, shape.box.height)
    if kind == "point":
        return annotation.category_name, ("point", shape.point.x, shape.point.y)
    if kind == "polygon":
        return annotation.category_name, ("polygon", tuple((p.x, p.y) for p in shape.polygon.points))
    assert kind == "mask"
    return annotation.category_name, ("mask", hub_shapes.decode_mask(shape.mask).astype(bool).tobytes())


async def test_a_synced_project_shows_the_queue_in_order_with_the_hubs_detections(
    bridge_desk: Desk, studio: Studio
) -> None:
    desk = bridge_desk
    ids = desk.image_ids
    await set_queue(desk, {ids[0]: 0.2, ids[1]: 0.9, ids[2]: 0.5, ids[3]: 0.7})
    detections = detection_pb2.Detections(
        boxes=[
            detection_pb2.BoxDetection(
                category_name="weed",
                confidence=0.75,
                model_version="1.0",
                box=geometry_pb2.Box(x=31, y=17, width=93, height=41),
            )
        ],
        points=[
            detection_pb2.PointDetection(
                category_name="stem", confidence=0.5, model_version="1.0", point=geometry_pb2.Point(x=200.5, y=100.25)
            )
        ],
        segmentations=[
            detection_pb2.SegmentationDetection(
                category_name="leaf",
                confidence=0.625,
                model_version="1.0",
                polygon=geometry_pb2.Polygon(
                    points=[
                        geometry_pb2.Point(x=10, y=10),
                        geometry_pb2.Point(x=90, y=12),
                        geometry_pb2.Point(x=50, y=80),
                    ]
                ),
            )
        ],
    )
    with desk.client() as client:
        request = annotation_service_pb2.PutDetectionsRequest(ref=REF, image_id=ids[1], detections=detections)
        await asyncio.to_thread(client.annotations.PutDetections, request)

    project = await sync(desk, studio, "queue order")

    listed = await tasks(studio, project)
    assert [t["data"]["image_id"] for t in listed] == [ids[1], ids[3], ids[2], ids[0]]  # active-learning order
    (backend,) = await ls(studio, "GET", "/api/ml", params={"project": project})
    assert backend["state"] == "CO"  # connected, with basic auth
    hooks = await ls(studio, "GET", "/api/webhooks", params={"project": project})
    assert [h["headers"] for h in hooks if h["url"].startswith(bridge_url(desk))] == [
        {"Authorization": f"Bearer {TOKEN}"}
    ]

    (prediction,) = await ls(studio, "GET", "/api/predictions", params={"task": listed[0]["id"]})
    assert prediction["model_version"] == "1.0"
    found = {}
    for region in prediction["result"]:
        value, kind = region["value"], region["type"]
        (label,) = value[kind]
        if kind == "rectanglelabels":
            found[label] = [
                value["x"] * W / 100,
                value["y"] * H / 100,
                value["width"] * W / 100,
                value["height"] * H / 100,
            ]
        elif kind == "keypointlabels":
            found[label] = [value["x"] * W / 100, value["y"] * H / 100]
        else:
            found[label] = [c for x, y in value["points"] for c in (x * W / 100, y * H / 100)]
    assert found["weed"] == pytest.approx([31, 17, 93, 41], abs=1e-4)
    assert found["stem"] == pytest.approx([200.5, 100.25], abs=1e-4)
    assert found["leaf"] == pytest.approx([10, 10, 90, 12, 50, 80], abs=1e-4)
    assert await ls(studio, "GET", "/api/predictions", params={"task": listed[1]["id"]}) == []  # nothing yet

    # The task's image URL is the bridge's, signed; a changed signature or no credential is refused.
    url = listed[0]["data"]["image"]
    image = await asyncio.to_thread(requests.get, url, timeout=30)
    assert image.status_code == 200
    assert image.content == desk.scenes[1].png()
    forged = await asyncio.to_thread(requests.get, url.replace("signature=", "signature=0"), timeout=30)
    assert forged.status_code == 403
    assert "error" in forged.json()
    anonymous = await asyncio.to_thread(requests.get, url.split("?")[0], timeout=30)
    assert anonymous.status_code == 401

    # Syncing again after the queue changed: no duplicates, the unannotated tasks in the new order.
    await set_queue(desk, {ids[0]: 0.95})
    await sync(desk, studio, "queue order")
    assert [t["data"]["image_id"] for t in await tasks(studio, project)] == [ids[0], ids[1], ids[3], ids[2]]


async def test_annotations_made_in_label_studio_are_the_hubs_one_to_one(bridge_desk: Desk, studio: Studio) -> None:
    desk = bridge_desk
    ids = desk.image_ids
    await set_queue(desk, {ids[0]: 0.9, ids[1]: 0.8})
    project = await sync(desk, studio, "one to one")
    by_image = {t["data"]["image_id"]: t for t in await tasks(studio, project)}
    first, second = by_image[ids[0]], by_image[ids[1]]
    leaf = desk.scenes[0].mask
    drawn = [
        rectangle("r1", "weed", 30.5, 20.25, 100, 50),
        keypoint("k1", "stem", 160, 120.5),
        polygon("p1", "leaf", [(10, 10), (80, 15), (40, 90)]),
        brushed("b1", "leaf", leaf),
        keypoint("s1", "leaf", 5, 5, control="smart_point"),  # a smart tool's click: a prompt, not an object
    ]
    created = await ls(studio, "POST", f"/api/tasks/{first['id']}/annotations", json={"result": drawn})

    expected = {
        ("weed", ("box", 30.5, 20.25, 100.0, 50.0)),
        ("stem", ("point", 160.0, 120.5)),
        ("leaf", ("polygon", ((10.0, 10.0), (80.0, 15.0), (40.0, 90.0)))),
        ("leaf", ("mask", leaf.tobytes())),
    }

    async def matches(wanted: set[Any]) -> bool:
        stored = await hub_annotations(desk, ids[0])
        got = {geometry(a) for a in stored}
        rounded = {(c, tuple(round(v, 3) if isinstance(v, float) else v for v in g)) for c, g in got}
        return len(stored) == len(wanted) and rounded == wanted

    await until(lambda: matches(expected), "the four regions on the hub")
    assert {a.creator.person for a in await hub_annotations(desk, ids[0])} == {"labelstudio:1"}
    assert await state(desk, ids[0]) == image_pb2.IMAGE_STATE_COMPLETE
    peer = PeerSettings(loop_host=desk.hub_target, loop_organization=REF.organization, loop_project=REF.project)
    trainer = TrainerHub(peer, "t", timedelta(minutes=5))
    try:
        assert ids[0] in [i.id for i in await asyncio.to_thread(lambda: list(trainer.images(COMPLETE)))]
    finally:
        trainer.close()
    before = {a.category_name + a.shape.WhichOneof("kind"): a.id for a in await hub_annotations(desk, ids[0])}

    # An edit: the box moves, the keypoint goes, the polygon changes; the same hub annotations change.
    edited = [
        rectangle("r1", "weed", 40, 30, 60, 40),
        polygon("p1", "leaf", [(12, 10), (80, 15), (40, 90), (5, 60)]),
        brushed("b1", "leaf", leaf),
    ]
    for _ in range(2):  # the same edit twice (a retry) changes nothing more
        await ls(studio, "PATCH", f"/api/annotations/{created['id']}", json={"result": edited})
    expected = {
        ("weed", ("box", 40.0, 30.0, 60.0, 40.0)),
        ("leaf", ("polygon", ((12.0, 10.0), (80.0, 15.0), (40.0, 90.0), (5.0, 60.0)))),
        ("leaf", ("mask", leaf.tobytes())),
    }
    await until(lambda: matches(expected), "the edited regions on the hub")
    after = {a.category_name + a.shape.WhichOneof("kind"): a.id for a in await hub_annotations(desk, ids[0])}
    assert after == {key: before[key] for key in ("weedbox", "leafpolygon", "leafmask")}

    # A region the hub cannot keep refuses the whole annotation: nothing is written.
    refused = await bridge(
        desk,
        "POST",
        "/webhook",
        {
            "action": "ANNOTATION_UPDATED",
            "project": {"id": project},
            "task": first,
            "annotation": {
                "id": created["id"],
                "task": first["id"],
                "result": [*edited[:1], rectangle("r9", "cow", 1, 1, 5, 5)],
            },
        },
    )
    assert refused.status_code == 400
    assert "'cow' is no category" in refused.json()["error"]
    assert await matches(expected)

    # Skipping the other task sends its image to review; deleting the annotation empties the hub's image.
    await ls(studio, "POST", f"/api/tasks/{second['id']}/annotations", json={"result": [], "was_cancelled": True})
    await until(lambda: _is(desk, ids[1], image_pb2.IMAGE_STATE_REVIEW), "the skipped image in review")
    await ls(studio, "DELETE", f"/api/annotations/{created['id']}")
    await until(lambda: matches(set()), "no annotation left on the hub")
    assert await state(desk, ids[0]) == image_pb2.IMAGE_STATE_ANNOTATE

    # Label Studio's train button queues a training on the hub.
    (backend,) = await ls(studio, "GET", "/api/ml", params={"project": project})
    await ls(studio, "POST", f"/api/ml/{backend['id']}/train", json={})
    with desk.client() as client:
        trainings = await until(lambda: asyncio.to_thread(lambda: list(client.list_trainings())), "a queued training")
    assert len(trainings) == 1


async def _is(desk: Desk, image_id: str, wanted: int) -> bool:
    return await state(desk, image_id) == wanted


async def test_a_new_image_gets_the_deployed_models_predictions_and_a_bad_task_fails_alone(
    bridge_desk: Desk, studio: Studio, stub_zip: Path
) -> None:
    desk = bridge_desk
    with desk.client() as client:
        for name in ("red", "green"):
            await asyncio.to_thread(client.create_category, name, "box")
        squares = await asyncio.to_thread(
            client.upload_image, jpeg(frame(squares=((200, 120, 96, "red"), (400, 300, 80, "green"))))
        )
    first = await upload(desk.hub.settings.port, await asyncio.to_thread(stub_zip.read_bytes))
    await set_queue(desk, {squares.metadata.id: 1.0, desk.image_ids[0]: 0.5})
    project = await sync(desk, studio, "live predictions")
    listed = await tasks(studio, project)
    (prediction,) = await ls(studio, "GET", "/api/predictions", params={"task": listed[0]["id"]})
    assert prediction["model_version"] == first
    with desk.client() as client:
        request = annotation_service_pb2.GetDetectionsRequest(
            ref=REF, image_id=squares.metadata.id, model_version=first
        )
        stored = (await asyncio.to_thread(client.annotations.GetDetections, request)).detections
    assert {b.category_name for b in stored.boxes} == {"red", "green"}  # the model ran and the hub keeps them
    predicted = sorted(
        (r["value"]["rectanglelabels"][0], r["value"]["x"] * 6.4, r["value"]["y"] * 4.8, r["value"]["width"] * 6.4)
        for r in prediction["result"]
    )
    expected = sorted((b.category_name, b.box.x, b.box.y, b.box.width) for b in stored.boxes)
    assert [p[0] for p in predicted] == [e[0] for e in expected]
    assert [p[1:] for p in predicted] == [pytest.approx(e[1:], abs=1e-3) for e in expected]

    # A task whose image the hub does not have, then a new model: predictions refresh for every
    # other task, labelled with the new version.
    await ls(studio, "POST", f"/api/projects/{project}/import", json=[{"data": {"image": "https://example.com/a.png"}}])
    second = await upload(desk.hub.settings.port, await asyncio.to_thread(stub_zip.read_bytes))
    assert second != first
    await ls(
        studio,
        "POST",
        "/api/dm/actions",
        params={"id": "retrieve_tasks_predictions", "project": project},
        json={"selectedItems": {"all": True, "excluded": []}},
    )
    for task in listed:
        versions = {
            p["model_version"] for p in await ls(studio, "GET", "/api/predictions", params={"task": task["id"]})
        }
        assert second in versions
    answer = await bridge(
        desk, "POST", "/predict", {"tasks": [listed[0], {"id": 99, "data": {"image": "https://example.com/a.png"}}]}
    )
    assert answer.status_code == 200
    good, bad = answer.json()["results"]
    assert good["model_version"] == second
    assert len(good["result"]) == len(stored.boxes)  # the same model, run again for the new version
    assert "names no hub image" in bad["error"]


async def test_a_smart_keypoint_click_outlines_the_clicked_object_only(bridge_desk: Desk, studio: Studio) -> None:
    desk = bridge_desk
    scene = desk.scenes[3]  # an object with a look-alike touching it
    await set_queue(desk, {desk.image_ids[3]: 1.0})
    project = await sync(desk, studio, "smart tools")
    (task,) = [t for t in await tasks(studio, project) if t["data"]["image_id"] == desk.image_ids[3]]
    (backend,) = await ls(studio, "GET", "/api/ml", params={"project": project})
    # A click on the object, and an alt-click (negative) on the look-alike beside it.
    inside, beside = masks.centre(scene.mask), masks.centre(scene.distractor)
    clicks = [
        keypoint("c1", "leaf", inside.x, inside.y, control="smart_point") | {"is_positive": True},
        keypoint("c2", "leaf", beside.x, beside.y, control="smart_point") | {"is_positive": False},
    ]
    answer = await ls(
        studio,
        "POST",
        f"/api/ml/{backend['id']}/interactive-annotating",
        json={"task": task["id"], "context": {"result": clicks}},
    )
    (region,) = answer["data"]["result"]
    assert region["type"] == "brushlabels"
    assert region["value"]["brushlabels"] == ["leaf"]
    mask = brush.decode(region["value"]["rle"], W, H)
    assert mask_iou(mask, scene.mask) > 0.8
    assert (mask & scene.distractor).sum() < 0.1 * scene.distractor.sum()


async def test_the_bridge_answers_its_credential_only_and_always_in_json(bridge_desk: Desk) -> None:
    desk = bridge_desk
    image_id = desk.image_ids[0]
    task = {"id": 1, "data": {"image": f"http://x/images/{image_id}", "image_id": image_id}}
    created = {
        "action": "ANNOTATION_CREATED",
        "project": {"id": 1},
        "task": task,
        "annotation": {"id": 1, "task": 1, "result": [rectangle("r1", "weed", 10, 10, 20, 20)]},
    }
    for auth in (None, ("labelstudio", "wrong-secret-0000000")):
        refused = await bridge(desk, "POST", "/webhook", created, auth=auth)
        assert refused.status_code == 401
        assert "credential" in refused.json()["error"]
    assert await hub_annotations(desk, image_id) == []
    assert (await bridge(desk, "GET", "/health", auth=None)).json()["status"] == "UP"

    malformed: list[bytes | Any] = [
        b"not json",
        [1, 2],
        {"tasks": 5},
        {"tasks": [{"id": 1}]},
        {"action": "ANNOTATION_CREATED", "annotation": {"id": "x"}},
        {"action": 3},
        {"action": "ANNOTATION_CREATED", "task": task, "annotation": {"id": 2, "result": "boxes"}},
        {
            "action": "ANNOTATION_CREATED",
            "task": task,
            "annotation": {"id": 2, "result": [{"type": "rectanglelabels"}]},
        },
    ]
    for body in malformed:
        path = "/predict" if isinstance(body, dict) and "tasks" in body else "/webhook"
        answer = await bridge(desk, "POST", path, body)
        assert answer.status_code == 400, (body, answer.text)
        assert answer.json()["error"]
    assert (await bridge(desk, "POST", "/nowhere", {})).status_code == 404

    # A body that claims more than the bridge takes is answered at once, before it is read.
    def claim_too_much() -> str:
        with socket.create_connection(("127.0.0.1", int(bridge_url(desk).rsplit(":", 1)[1])), timeout=30) as raw:
            raw.sendall(
                b"POST /webhook HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                + TOKEN.encode()
                + b"\r\nContent-Type: application/json\r\nContent-Length: 1000000000000\r\n\r\n{}"
            )
            return raw.recv(65536).decode()

    head = await asyncio.to_thread(claim_too_much)
    assert head.startswith("HTTP/1.1 413")
    assert "application/json" in head

    accepted = await bridge(desk, "POST", "/webhook", created, auth=("any-user", TOKEN))
    assert accepted.status_code == 200, accepted.text
    assert len(await hub_annotations(desk, image_id)) == 1


def test_the_bridge_needs_a_credential() -> None:
    with pytest.raises(ConfigError, match="LABEL_STUDIO_BRIDGE_TOKEN"):
        load_settings(AnnotatorSettings, label_studio_port=0)


def test_brush_masks_round_trip_with_label_studios_own_converter(tmp_path: Path) -> None:
    scene = shapes.scene(1)
    script = """
import json, sys
import numpy as np
from label_studio_sdk.converter.brush import decode_rle, mask2rle
given = json.load(open(sys.argv[1]))
ours = decode_rle(given["rle"]).reshape(given["height"], given["width"], 4)[:, :, 3] > 0
theirs = mask2rle(np.array(given["mask"], dtype=np.uint8) * 255)
print(json.dumps({"decoded": ours.astype(int).tolist(), "encoded": [int(v) for v in theirs]}))
"""
    given = tmp_path / "mask.json"
    given.write_text(
        json.dumps({"rle": brush.encode(scene.mask), "width": W, "height": H, "mask": scene.mask.astype(int).tolist()})
    )
    done = subprocess.run(
        [str(VENV / "bin" / "python"), "-c", script, str(given)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    answer = json.loads(done.stdout)
    assert (np.array(answer["decoded"], dtype=bool) == scene.mask).all()
    assert (brush.decode(answer["encoded"], W, H) == scene.mask).all()
    with pytest.raises(brush.BadBrush, match="holds"):
        brush.decode(answer["encoded"], W + 1, H)
