"""A real detector process refuses images whose header claims too many pixels before decoding them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from tests import crafted
from tests.harness import ServiceProcess, serve
from tests.memory import MB, peak_rss
from visionloop.client import DetectorClient
from visionloop.testing.frames import frame, jpeg

GOOD = jpeg(frame(squares=((100, 100, 64, "red"),)))
BOMB = crafted.zero_png()  # 136 KiB declaring 12000x12000: 432 MB as BGR pixels
CODES = {code.value[0]: code for code in grpc.StatusCode}
BOMBS = [
    (BOMB, "image is 12000x12000 pixels; the limit is 50000000 pixels"),
    (crafted.declared_png(60000, 60000), "image is 60000x60000 pixels"),
    (crafted.declared_jpeg(60000, 60000), "image is 60000x60000 pixels"),
]


def exercise(client: DetectorClient, bad: bytes) -> list[tuple[grpc.StatusCode, str]]:
    """Detect, DetectBatch and DetectStream with ``bad`` among good frames; each call's outcome for it."""
    outcomes = []
    for call in (lambda: client.detect(bad), lambda: client.detect_batch([GOOD, bad, bad])):
        try:
            call()
            outcomes.append((grpc.StatusCode.OK, ""))
        except grpc.RpcError as error:
            outcomes.append((error.code(), error.details()))
    answers = list(client.detect_stream([GOOD, bad, GOOD, bad, GOOD]))
    assert [a.frame_id for a in answers] == [0, 1, 2, 3, 4]
    assert all(a.result.detections.boxes for a in answers[::2])  # the good frames around it are answered
    outcomes += [(CODES[a.error_code], a.error_message) for a in answers[1::2]]
    return outcomes


@pytest.fixture(scope="module")
def detector(
    tmp_path_factory: pytest.TempPathFactory, stub_zip: Path
) -> Iterator[tuple[ServiceProcess, DetectorClient]]:
    tmp_path = tmp_path_factory.mktemp("detector")
    with (
        serve("detector", tmp_path, env={"DETECTOR_MODEL_PATHS": f"stub={stub_zip}"}) as process,
        DetectorClient(f"127.0.0.1:{process.ports()['detector']}", timeout=120) as client,
    ):
        yield process, client


def test_pixel_bombs_are_refused_without_decoding_them(detector: tuple[ServiceProcess, DetectorClient]) -> None:
    process, client = detector
    for _ in range(3):  # the same calls on a good picture first: pools, caches and arenas warm up
        assert exercise(client, GOOD) == [(grpc.StatusCode.OK, "")] * 4
    before = peak_rss(process.proc.pid)
    for bomb, message in BOMBS:
        outcomes = exercise(client, bomb)
        assert [code for code, _ in outcomes] == [grpc.StatusCode.RESOURCE_EXHAUSTED] * 4, outcomes
        assert all(message in details for _, details in outcomes), outcomes
    grown = peak_rss(process.proc.pid) - before
    assert grown < 50 * MB, f"the detector's peak memory grew by {grown / MB:.0f} MB"


def test_a_png_with_a_bad_checksum_is_refused(detector: tuple[ServiceProcess, DetectorClient]) -> None:
    _, client = detector
    outcomes = exercise(client, crafted.bad_crc_png())
    assert [code for code, _ in outcomes] == [grpc.StatusCode.INVALID_ARGUMENT] * 4, outcomes
    assert all("checksum in b'IDAT'" in details for _, details in outcomes), outcomes
