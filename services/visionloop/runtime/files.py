"""Files that survive a crash at any instant: written aside, flushed to disk, renamed into place.

One implementation for every durable file the services write: the hub's blobs in the data
folder, the detector's outbox items, the trainer's records and checkpoints, the annotator's state.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

TEMP_SUFFIX = ".tmp"


def is_temporary(name: str) -> bool:
    """Whether a file name is one of ``atomic_writer``'s files being written (or left by a crash)."""
    return name.startswith(".") and name.endswith(TEMP_SUFFIX)


def fsync_dir(path: Path) -> None:
    """Flush a folder's entries to disk: what was renamed, created or deleted in it survives a power cut."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dirs(path: Path) -> None:
    """``mkdir -p``, each new folder flushed into its parent (else a power cut can lose it and all in it)."""
    if path.is_dir():
        return
    make_dirs(path.parent)
    with contextlib.suppress(FileExistsError):  # made meanwhile by another writer, whose flush may not be done
        path.mkdir()
    fsync_dir(path.parent)


@contextlib.contextmanager
def atomic_writer(path: Path) -> Iterator[BinaryIO]:
    """A file to write ``path``'s new content into.

    If the block succeeds, the content is flushed to disk, renamed over ``path`` and the rename
    flushed too: once the block returns, the new file survives ``kill -9`` and power loss. If the
    block raises, ``path`` is left as it was and the partial file is removed. Readers see the old
    or the new file, never a mix. The partial file is ``.<name>.<random>.tmp`` beside ``path``
    (``is_temporary``), unique, so concurrent writers of one path never share it.
    """
    make_dirs(path.parent)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}{TEMP_SUFFIX}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # permissions as open() gives
    try:
        with os.fdopen(fd, "wb") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def write_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` (see ``atomic_writer``)."""
    with atomic_writer(path) as out:
        out.write(data)
