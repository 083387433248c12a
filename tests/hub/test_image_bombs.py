"""A real hub process refuses images too large for it, each in its own answer, without decoding them.

The hub runs as deployed (``visionloop serve loop``), with ``VISIONLOOP_MAX_IMAGE_BYTES`` lowered
so that an image over the byte limit is cheap to send.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest

from tests import crafted
from tests.harness import ServiceProcess, serve
from tests.hub.pictures import picture
from tests.memory import MB, peak_rss
from visionloop.client.loop import ImageItem, LoopClient

MAX_BYTES = 1_000_000
LARGE = crafted.encode(np.random.default_rng(0).integers(0, 255, (600, 600, 3), dtype=np.uint8), "PNG")
BOMBS = [
    (crafted.zero_png(), "image is 12000x12000 pixels; the limit is 100000000 pixels"),
    (crafted.declared_png(60000, 60000), "image is 60000x60000 pixels"),
    (crafted.declared_jpeg(60000, 60000), "image is 60000x60000 pixels"),
]


@dataclass
class Outcomes:
    unary: tuple[grpc.StatusCode, str]
    stream: list[tuple[grpc.StatusCode, str]]  # the bad image's answers in the stream
    imported_warnings: list[str]


CODES = {code.value[0]: code for code in grpc.StatusCode}


def yolo_zip(images: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("data.yaml", "names: [weed]\n")
        for name, data in images.items():
            archive.writestr(f"images/{name}", data)
            archive.writestr(f"labels/{Path(name).stem}.txt", "0 0.5 0.5 0.25 0.25\n")
    return out.getvalue()


def exercise(client: LoopClient, bad: bytes, seed: int, folder: Path) -> Outcomes:
    """UploadImage, UploadImages and ImportDataset with ``bad`` among good pictures new to the hub.

    Every good picture is answered and stored, before and after the bad one.
    """
    try:
        client.upload_image(bad)
        unary = (grpc.StatusCode.OK, "")
    except grpc.RpcError as error:
        unary = (error.code(), error.details())

    goods = [picture(seed * 10 + i) for i in range(4)]
    sent = [goods[0], bad, goods[1], LARGE, goods[2], bad, goods[3]]
    answers = list(client.upload_images(ImageItem(data) for data in sent))
    assert [a.sequence for a in answers] == list(range(len(sent)))
    for index in (0, 2, 4, 6):
        assert answers[index].error_code == 0, answers[index]
        assert answers[index].metadata.id
    assert CODES[answers[3].error_code] is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert answers[3].error_message == f"image 3 announces {len(LARGE)} bytes; the limit is {MAX_BYTES} bytes"
    stream = [(CODES[answers[i].error_code], answers[i].error_message) for i in (1, 5)]

    archive = folder / f"dataset-{seed}.zip"
    imported = picture(seed * 10 + 5)
    archive.write_bytes(yolo_zip({"good.jpg": imported, "bad.png": bad}))
    result = client.import_dataset(archive, "yolo")
    stored = {m.id for m in client.list_images()}
    assert {a.metadata.id for a in answers if not a.error_code} | {hashlib.sha256(imported).hexdigest()} <= stored
    return Outcomes(unary, stream, list(result.warnings))


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServiceProcess, LoopClient, Path]]:
    tmp_path = tmp_path_factory.mktemp("hub")
    with (
        serve("loop", tmp_path, env={"VISIONLOOP_MAX_IMAGE_BYTES": str(MAX_BYTES)}) as process,
        LoopClient(f"127.0.0.1:{process.ports()['loop']}", "acme", "weeds", timeout=120) as client,
    ):
        client.create_project()
        yield process, client, tmp_path


def test_pixel_bombs_fail_only_their_own_item_and_cost_no_memory(hub: tuple[ServiceProcess, LoopClient, Path]) -> None:
    process, client, folder = hub
    for seed in range(3):  # the same calls with a good picture in the bomb's place: pools and arenas warm up
        warm = exercise(client, picture(1000 + seed), 100 + seed, folder)
        assert warm.unary[0] is grpc.StatusCode.OK
    before = peak_rss(process.proc.pid)
    for seed, (bomb, message) in enumerate(BOMBS):
        outcomes = exercise(client, bomb, seed, folder)
        assert outcomes.unary[0] is grpc.StatusCode.RESOURCE_EXHAUSTED, outcomes
        assert message in outcomes.unary[1], outcomes
        assert all(code is grpc.StatusCode.RESOURCE_EXHAUSTED and message in text for code, text in outcomes.stream)
        assert any(w.startswith("images/bad.png: skipped") and message in w for w in outcomes.imported_warnings), (
            outcomes.imported_warnings
        )
    grown = peak_rss(process.proc.pid) - before
    assert grown < 50 * MB, f"the hub's peak memory grew by {grown / MB:.0f} MB"


def test_a_png_with_a_bad_checksum_is_refused(hub: tuple[ServiceProcess, LoopClient, Path]) -> None:
    _, client, folder = hub
    outcomes = exercise(client, crafted.bad_crc_png(), 50, folder)
    for code, text in [outcomes.unary, *outcomes.stream]:
        assert code is grpc.StatusCode.INVALID_ARGUMENT
        assert "checksum in b'IDAT'" in text
    assert any("checksum in b'IDAT'" in w for w in outcomes.imported_warnings)
