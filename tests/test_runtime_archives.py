"""Untrusted zips: entries that escape, links, encrypted or exotic entries and zip bombs are refused."""

from __future__ import annotations

import stat
import struct
import zipfile
from pathlib import Path

import pytest

from tests.bombs import zero_entries
from visionloop.lib.archives import UnsafeArchive, safe_extract, zip_entry_problem

MIB = 1024**2


def make_zip(path: Path, entries: list[tuple[zipfile.ZipInfo | str, bytes]]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for info, data in entries:
            archive.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED)
    return path


def symlink(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ("../escape.txt", "escapes the archive with '..'"),
        ("models/../../escape.txt", "escapes the archive with '..'"),
        ("..\\escape.txt", "escapes the archive with '..'"),
        ("/etc/cron.d/evil", "has an absolute path"),
        ("C:/evil.txt", "has an absolute path"),
        (symlink("model.onnx"), "is a symbolic link"),
    ],
)
def test_unsafe_entries_are_refused_before_anything_is_written(
    tmp_path: Path, entry: zipfile.ZipInfo | str, problem: str
) -> None:
    archive = make_zip(tmp_path / "bad.zip", [("model.json", b"{}"), (entry, b"/etc/passwd")])
    destination = tmp_path / "out" / "model"
    with pytest.raises(UnsafeArchive, match=problem):
        safe_extract(archive, destination)
    assert not (tmp_path / "out").exists()  # refused up front: not even the safe entry was written
    assert not (tmp_path / "escape.txt").exists()


def test_zip_bomb_is_refused(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "bomb.zip", [("model.json", b"{}"), ("weights.bin", b"\0" * (20 * MIB))])
    (info,) = [i for i in zipfile.ZipFile(archive).infolist() if i.filename == "weights.bin"]
    assert zip_entry_problem(info) is not None
    with pytest.raises(UnsafeArchive, match=r"'weights.bin' expands \d+x \(a zip bomb\?\)"):
        safe_extract(archive, tmp_path / "out")


def test_many_small_bombs_are_refused(tmp_path: Path) -> None:
    """1024 entries of 1 MiB of zeros, 1 GiB from 1 MiB; and entries each too small for the
    per-entry rule, which only the whole archive's ratio catches."""
    archive = tmp_path / "bombs.zip"
    archive.write_bytes(zero_entries(1024, MIB, "part-{:04d}.bin"))
    assert archive.stat().st_size < 2 * MIB
    with pytest.raises(UnsafeArchive, match=r"\(a zip bomb\?\)"):
        safe_extract(archive, tmp_path / "out", max_total_bytes=8 * 1024 * MIB, max_entries=2000)

    archive.write_bytes(zero_entries(2048, 60 * 1024, "part-{:04d}.bin"))
    assert all(zip_entry_problem(info) is None for info in zipfile.ZipFile(archive).infolist())
    with pytest.raises(UnsafeArchive, match=r"the zip expands \d+x \(2048 entries, 125829120 bytes from \d+\)"):
        safe_extract(archive, tmp_path / "out", max_entries=4096)
    assert not (tmp_path / "out").exists()


def test_total_size_and_entry_count_are_bounded(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "many.zip", [(f"part-{i}.bin", bytes(range(256)) * 4) for i in range(5)])
    with pytest.raises(UnsafeArchive, match=r"expands to 5120 bytes; at most 4096"):
        safe_extract(archive, tmp_path / "a", max_total_bytes=4096)
    with pytest.raises(UnsafeArchive, match="the zip has 5 entries; at most 4"):
        safe_extract(archive, tmp_path / "b", max_entries=4)
    safe_extract(archive, tmp_path / "c")
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == [f"part-{i}.bin" for i in range(5)]


def test_an_entry_that_understates_its_size_does_not_get_through(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "liar.zip", [("weights.bin", b"\1" * (4 * MIB))])
    data = bytearray(archive.read_bytes())
    for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):  # local header, central directory
        at = data.find(signature)
        data[at + offset : at + offset + 4] = struct.pack("<I", 100)  # claims 100 bytes
    archive.write_bytes(bytes(data))
    with pytest.raises((UnsafeArchive, zipfile.BadZipFile)):
        safe_extract(archive, tmp_path / "out", max_total_bytes=MIB)
    written = tmp_path / "out" / "weights.bin"
    assert not written.exists() or written.stat().st_size <= MIB


def test_encrypted_and_exotic_entries_are_refused() -> None:
    encrypted = zipfile.ZipInfo("model.onnx")
    encrypted.flag_bits |= 0x1
    assert zip_entry_problem(encrypted) == "is encrypted"
    lzma = zipfile.ZipInfo("model.onnx")
    lzma.compress_type = zipfile.ZIP_LZMA
    assert "only stored and deflate" in (zip_entry_problem(lzma) or "")
    assert zip_entry_problem(zipfile.ZipInfo("weights/model.onnx")) is None
