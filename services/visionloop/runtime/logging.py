"""structlog set-up: JSON lines in production, a readable console on a TTY.

Library logs (grpc, botocore, ...) go through the same renderer, the request id bound by the
interceptor is merged into every line, and anything that looks like a credential is redacted.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

from visionloop.runtime.config import LogFormat
from visionloop.runtime.text import LOG_EXCEPTION_CHARS, LOG_VALUE_CHARS, clip

_SECRET_KEYS = re.compile(r"(authorization|token|password|secret|api[_-]?key|credential)", re.IGNORECASE)
_BEARER = re.compile(r"(?i)bearer\s+\S+")
_CHATTY_LIBRARIES = ("asyncio", "grpc._cython.cygrpc", "grpc._cython", "botocore", "urllib3")


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return _BEARER.sub("Bearer [redacted]", value)
    return value


def redact_secrets(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Drop credential-looking fields and bearer tokens wherever they appear."""
    for key in list(event_dict):
        if _SECRET_KEYS.search(key):
            event_dict[key] = "[redacted]"
        else:
            event_dict[key] = _redact_value(event_dict[key])
    return event_dict


def clip_long_values(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Cut long strings: a value (or an exception message) carrying a client's input has no bound of its own."""
    for key, value in event_dict.items():
        if isinstance(value, str):
            event_dict[key] = clip(value, LOG_EXCEPTION_CHARS if key == "exception" else LOG_VALUE_CHARS)
    return event_dict


def configure_logging(
    log_format: LogFormat = LogFormat.AUTO, level: str = "info", stream: TextIO | None = None
) -> None:
    """Configure structlog and the stdlib root logger once per process."""
    stream = stream or sys.stdout
    console = log_format is LogFormat.CONSOLE or (log_format is LogFormat.AUTO and stream.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_secrets,
        structlog.processors.StackInfoRenderer(),
    ]
    renderer: Any = structlog.dev.ConsoleRenderer() if console else structlog.processors.JSONRenderer()
    structlog.configure(
        # filter_by_level first: a debug line below the level costs one check, not the whole chain
        # (every successful RPC logs at debug).
        processors=[structlog.stdlib.filter_by_level, *shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    final: list[Any] = [structlog.stdlib.ProcessorFormatter.remove_processors_meta]
    if not console:
        final.append(structlog.processors.format_exc_info)
    final += [clip_long_values, renderer]
    handler = logging.StreamHandler(stream)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(foreign_pre_chain=shared, processors=final))
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level.upper())
    for chatty in _CHATTY_LIBRARIES:  # per-call debug lines from grpc's event loop glue drown the useful ones
        logging.getLogger(chatty).setLevel(max(logging.INFO, root.level))


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.stdlib.get_logger(name)
