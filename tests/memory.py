"""A real server process's peak memory, for tests that bound what an input may cost it."""

from __future__ import annotations

from pathlib import Path

MB = 1024 * 1024


def peak_rss(pid: int) -> int:
    """The process's peak resident set size so far (``VmHWM``), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"/proc/{pid}/status has no VmHWM line")
