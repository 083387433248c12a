"""Bounding text that came from outside before it goes into a status, a log line or stored state.

Clients choose ids, names and messages; echoing one back verbatim lets a megabyte of input
become a status message larger than gRPC's metadata limit or a log line nobody can read.
Every place that repeats outside text goes through ``clip`` (plain text) or ``quoted`` (a
value inside a sentence).
"""

from __future__ import annotations

from typing import Any

STATUS_MESSAGE_CHARS = 2048  # well inside gRPC's 8 KiB default limit on a response's metadata
LOG_VALUE_CHARS = 8192
LOG_EXCEPTION_CHARS = 65536  # a stack trace is long, but one carrying its input is unbounded


def clip(text: str, limit: int) -> str:
    """``text`` in at most ``limit`` characters, saying how much was left out."""
    if len(text) <= limit:
        return text
    keep = max(0, limit - len(f"… ({len(text)} more characters)"))
    return f"{text[:keep]}… ({len(text) - keep} more characters)"


def quoted(value: Any, limit: int = 80) -> str:
    """``repr(value)`` for a message: a long string or bytes as the repr of its first ``limit`` characters."""
    if isinstance(value, str | bytes) and len(value) > limit:
        return f"{value[:limit]!r}… ({len(value)} long)"
    return clip(repr(value), limit)
