"""Start real VisionLoop processes through the CLI and talk to them over loopback."""

from __future__ import annotations

import asyncio
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

REPO = Path(__file__).resolve().parent.parent
VISIONLOOP = shutil.which("visionloop", path=str(Path(sys.executable).parent)) or "visionloop"


@dataclass
class ServiceProcess:
    """A ``visionloop`` process whose JSON log lines are collected as they arrive."""

    proc: subprocess.Popen[str]
    lines: list[dict[str, Any]] = field(default_factory=list)
    raw: list[str] = field(default_factory=list)
    _events: queue.Queue[dict[str, Any]] = field(default_factory=queue.Queue)

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.raw.append(line)
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            self.lines.append(record)
            self._events.put(record)

    def wait_for(self, event: str, count: int = 1, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Wait until ``count`` log records with ``event`` were seen; return them."""
        deadline = time.monotonic() + timeout
        while True:
            found = [r for r in self.lines if r.get("event") == event]
            if len(found) >= count:
                return found
            if self.proc.poll() is not None:
                time.sleep(0.2)  # let the pump drain
                raise AssertionError(f"process exited {self.proc.returncode} before {event!r}: {self.output()}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {event!r} within {timeout}s: {self.output()}")
            with suppress(queue.Empty):
                self._events.get(timeout=min(remaining, 0.5))

    def ports(self) -> dict[str, int]:
        """Service name -> bound gRPC port, from the 'listening' log lines."""
        return {r["service"]: r["port"] for r in self.lines if r.get("event") == "listening"}

    def metrics_port(self) -> int:
        record = self.wait_for("metrics listening")[0]
        return int(record["address"].rsplit(":", 1)[1])

    def output(self) -> str:
        stderr = self.proc.stderr.read() if self.proc.stderr and self.proc.poll() is not None else ""
        return "".join(self.raw)[-4000:] + stderr[-4000:]

    def terminate(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)


def base_env(tmp_path: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VISIONLOOP_", "LOOP_"))}
    env.update(
        VISIONLOOP_LOG_FORMAT="json",
        VISIONLOOP_LOG_LEVEL="debug",
        VISIONLOOP_DATA_DIR=str(tmp_path / "data"),
        VISIONLOOP_SHUTDOWN_DRAIN_SECONDS="0.2",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra or {})
    return env


@contextmanager
def visionloop(
    *args: str,
    tmp_path: Path,
    env: Mapping[str, str] | None = None,
    ready: str | None = "listening",
    count: int = 1,
    prefix: Sequence[str] = (),
) -> Iterator[ServiceProcess]:
    """Run ``visionloop *args`` (after ``prefix``, a command that execs the rest); wait for ``count``
    ``ready`` log lines; kill it on exit if still running."""
    proc = subprocess.Popen(
        [*prefix, VISIONLOOP, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=base_env(tmp_path, env),
        cwd=tmp_path,
    )
    service = ServiceProcess(proc)
    threading.Thread(target=service._pump, daemon=True).start()
    try:
        if ready:
            service.wait_for(ready, count=count)
        yield service
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


def serve(service: str, tmp_path: Path, env: Mapping[str, str] | None = None, prefix: Sequence[str] = ()) -> Any:
    """``visionloop serve SERVICE`` on free gRPC and metrics ports."""
    args = ("serve", service, "--port", "0", "--metrics-port", "0")
    return visionloop(*args, tmp_path=tmp_path, env=env, prefix=prefix)


def health_status(channel: grpc.Channel, service: str = "") -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    return stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status


SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def eventually(check: Callable[[], bool], within: float = 10.0, what: str = "condition") -> None:
    """Poll ``check`` on the event loop until it holds; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {within}s")
        await asyncio.sleep(0.01)
