"""Untrusted zip archives (model zips, datasets): what is unsafe to read, and a safe extractor."""

from __future__ import annotations

import re
import stat
import zipfile
from collections.abc import Sequence
from pathlib import Path

MIB = 1024**2
MAX_COMPRESSION_RATIO = 200  # weights and images barely compress; far higher ratios mean a zip bomb
RATIO_CHECK_MIN_BYTES = 64 * 1024  # small text files (json, labels) legitimately compress well
# The whole archive's ratio catches a bomb of many entries each too small for the rule above
# (1024 entries of 1 MiB of zeros); text-only archives this large are no dataset or model.
MAX_ARCHIVE_RATIO = 50
ARCHIVE_RATIO_MIN_BYTES = 64 * MIB
MAX_ENTRIES = 10_000


class UnsafeArchive(ValueError):
    """The archive must not be read; the message names the entry and the reason."""


def zip_entry_problem(info: zipfile.ZipInfo) -> str | None:
    """Why an entry of an untrusted zip is unsafe to read, or None."""
    name = info.filename.replace("\\", "/")
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return "has an absolute path"
    if ".." in name.split("/"):
        return "escapes the archive with '..'"
    if stat.S_ISLNK(info.external_attr >> 16):
        return "is a symbolic link"
    if info.flag_bits & 0x1:
        return "is encrypted"
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        return f"uses compression method {info.compress_type}; only stored and deflate are accepted"
    if info.file_size >= RATIO_CHECK_MIN_BYTES and info.file_size > MAX_COMPRESSION_RATIO * max(info.compress_size, 1):
        return f"expands {info.file_size // max(info.compress_size, 1)}x (a zip bomb?)"
    return None


def archive_problem(entries: Sequence[zipfile.ZipInfo], max_total_bytes: int, max_entries: int) -> str | None:
    """Why a whole untrusted zip is too big to read (entries, declared size, compression ratio), or None."""
    if len(entries) > max_entries:
        return f"the zip has {len(entries)} entries; at most {max_entries} are accepted"
    total = sum(info.file_size for info in entries)
    if total > max_total_bytes:
        return f"the zip expands to {total} bytes; at most {max_total_bytes} are accepted"
    packed = max(sum(info.compress_size for info in entries), 1)
    if total >= ARCHIVE_RATIO_MIN_BYTES and total > MAX_ARCHIVE_RATIO * packed:
        return (
            f"the zip expands {total // packed}x ({len(entries)} entries, {total} bytes from {packed}); "
            f"at most {MAX_ARCHIVE_RATIO}x is accepted (a zip bomb?)"
        )
    return None


def check_entries(
    archive: zipfile.ZipFile, max_total_bytes: int, max_entries: int = MAX_ENTRIES
) -> list[zipfile.ZipInfo]:
    """Every entry of ``archive`` once checked; UnsafeArchive naming the first problem."""
    entries = archive.infolist()
    if len(entries) <= max_entries:
        for info in entries:
            if (problem := zip_entry_problem(info)) is not None:
                raise UnsafeArchive(f"zip entry {info.filename!r} {problem}")
    if (problem := archive_problem(entries, max_total_bytes, max_entries)) is not None:
        raise UnsafeArchive(problem)
    return entries


def safe_extract(
    archive_path: Path, destination: Path, max_total_bytes: int = 8 * 1024**3, max_entries: int = MAX_ENTRIES
) -> None:
    """Extract after checking every entry; UnsafeArchive (a ValueError) when one is unsafe.

    The declared sizes are checked up front and the bytes written are counted as well, so an
    entry whose header under-states its size cannot fill the disk either.
    """
    with zipfile.ZipFile(archive_path) as archive:
        entries = check_entries(archive, max_total_bytes, max_entries)
        destination.mkdir(parents=True, exist_ok=True)
        written = 0
        for info in entries:
            target = destination / info.filename.replace("\\", "/")
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(info) as source, target.open("wb") as out:
                while block := source.read(MIB):
                    written += len(block)
                    if written > max_total_bytes:
                        raise UnsafeArchive(f"the zip expands beyond {max_total_bytes} bytes (entry {info.filename!r})")
                    out.write(block)
