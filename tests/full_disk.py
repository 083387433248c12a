"""Real full disks for service processes: a small tmpfs of their own that the test fills and frees.

The service runs in its own user and mount namespace (``unshare --user --map-root-user --mount``,
no root needed; as root, a plain mount namespace when user namespaces are off) with a tmpfs of a
few MiB mounted on its folders. Nothing outside the namespace sees those mounts. The test reaches
them through ``/proc/<pid>/root``, writes a filler file until the kernel answers ENOSPC, and
deletes it again to give the space back, while the service keeps running.
"""

from __future__ import annotations

import errno
import functools
import os
import shlex
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.harness import ServiceProcess

MiB = 1024 * 1024
FILLER = ".filler"
_NAMESPACES = (["unshare", "--user", "--map-root-user", "--mount"], ["unshare", "--mount"])


@functools.cache
def _unshare() -> tuple[str, ...] | None:
    """The first ``unshare`` invocation that may mount a tmpfs here, or None."""
    with tempfile.TemporaryDirectory() as folder:
        for command in _NAMESPACES:
            probe = [*command, "sh", "-c", f"mount -t tmpfs -o size=1m tmpfs {shlex.quote(folder)}"]
            try:
                if subprocess.run(probe, capture_output=True, timeout=30).returncode == 0:
                    return tuple(command)
            except (OSError, subprocess.TimeoutExpired):
                continue
    return None


def small_disks(sizes: Mapping[Path, int], files: Mapping[Path, str] | None = None) -> list[str]:
    """A command prefix: run the rest in a new mount namespace with a tmpfs of ``sizes[folder]``
    bytes on each folder, mounted in order (so a folder may lie on an earlier one's disk), and
    ``files`` written on them first. Skips the test where no namespace can be made."""
    unshare = _unshare()
    if unshare is None:
        pytest.skip("needs unshare(1) with user namespaces (or root) to give a service a small disk")
    mounts = [
        f"mkdir -p {shlex.quote(str(folder))} && mount -t tmpfs -o size={size} tmpfs {shlex.quote(str(folder))}"
        for folder, size in sizes.items()
    ]
    mounts += [f"printf %s {shlex.quote(text)} > {shlex.quote(str(path))}" for path, text in (files or {}).items()]
    return [*unshare, "sh", "-c", " && ".join(mounts) + ' && exec "$@"', "sh"]


@dataclass(frozen=True)
class SmallDisk:
    """One of a running service's small disks, as the test sees it."""

    service: ServiceProcess
    folder: Path  # where the service has it mounted

    @property
    def root(self) -> Path:
        """The folder inside the service's mount namespace."""
        return Path(f"/proc/{self.service.proc.pid}/root") / self.folder.relative_to("/")

    def fill(self, leave: int = 0) -> None:
        """Take every free byte but ``leave`` (a filler file, written until ENOSPC when ``leave`` is 0)."""
        stat = os.statvfs(self.root)
        wanted = stat.f_bavail * stat.f_frsize - leave
        fd = os.open(self.root / FILLER, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for block in (MiB, 4096, 1):
                try:
                    while wanted >= block and (written := os.write(fd, b"\0" * block)):
                        wanted -= written
                except OSError as error:
                    if error.errno != errno.ENOSPC:
                        raise
                    break
        finally:
            os.close(fd)
        if not leave:
            assert os.statvfs(self.root).f_bavail == 0

    def free(self) -> None:
        """Give the space back."""
        (self.root / FILLER).unlink()

    def files(self, under: str = "") -> list[str]:
        """Files under ``under`` (relative to the folder), filler left out, as relative paths."""
        base = self.root / under
        return sorted(
            str(path.relative_to(self.root)) for path in base.rglob("*") if path.is_file() and path.name != FILLER
        )
