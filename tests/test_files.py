"""Durable files (runtime.files): the order of flushes that makes a write survive a power cut."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from visionloop.runtime import files
from visionloop.runtime.files import atomic_writer, is_temporary, write_atomically


@pytest.fixture
def disk_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """The fsyncs and renames ``runtime.files`` makes, in order, by path (the real calls still run)."""
    calls: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        calls.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(source: str | Path, target: str | Path) -> None:
        calls.append(("replace", f"{Path(source).name} -> {target}"))
        real_replace(source, target)

    monkeypatch.setattr(files.os, "fsync", fsync)
    monkeypatch.setattr(files.os, "replace", replace)
    return calls


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="names file descriptors through Linux's /proc")
def test_data_then_rename_then_folder_are_flushed_and_new_folders_into_their_parents(
    tmp_path: Path, disk_calls: list[tuple[str, str]]
) -> None:
    target = tmp_path / "a" / "b" / "item"
    write_atomically(target, b"content")
    assert target.read_bytes() == b"content"
    assert disk_calls[:2] == [("fsync", str(tmp_path)), ("fsync", str(tmp_path / "a"))]  # a, then a/b
    kind, temporary = disk_calls[2]  # the data, before the rename
    assert kind == "fsync"
    assert Path(temporary).parent == target.parent
    assert is_temporary(Path(temporary).name)
    assert disk_calls[3:] == [
        ("replace", f"{Path(temporary).name} -> {target}"),
        ("fsync", str(target.parent)),  # the rename itself
    ]
    # a second write into the folder that exists: no folder is made
    disk_calls.clear()
    write_atomically(target, b"second")
    assert [kind for kind, _ in disk_calls] == ["fsync", "replace", "fsync"]
    assert target.read_bytes() == b"second"


def test_a_failed_write_leaves_the_old_file_and_no_partial_one(tmp_path: Path) -> None:
    target = tmp_path / "item"
    write_atomically(target, b"old")

    def fail_midway() -> None:
        with atomic_writer(target) as out:
            out.write(b"half of the new")
            raise RuntimeError("the writer failed")

    with pytest.raises(RuntimeError):
        fail_midway()
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["item"]


def test_concurrent_writers_of_one_path_never_share_a_partial_file(tmp_path: Path) -> None:
    target = tmp_path / "item"
    payloads = [bytes([n]) * 100_000 for n in range(8)]
    errors: list[BaseException] = []

    def write(data: bytes) -> None:
        try:
            for _ in range(10):
                write_atomically(target, data)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=write, args=(data,)) for data in payloads]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert target.read_bytes() in payloads  # one writer's bytes, whole
    assert [p.name for p in tmp_path.iterdir()] == ["item"]


def test_files_get_the_permissions_open_gives_them(tmp_path: Path) -> None:
    write_atomically(tmp_path / "atomic", b"x")
    (tmp_path / "plain").write_bytes(b"x")
    assert (tmp_path / "atomic").stat().st_mode == (tmp_path / "plain").stat().st_mode


def test_temporary_names() -> None:
    assert is_temporary(".item.0badf00d.tmp")
    assert not is_temporary("item")
    assert not is_temporary("notes.tmp")  # a blob key may end so; ours start with a dot
