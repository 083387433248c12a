"""A real ``tritonserver`` on the CPU, from the ``nvidia-pytriton`` wheel (``visionloop demo --backend
triton``, the detector's and converter's tests).

The wheel ships the server binary, the python backend and one python-backend stub per Python
version, with the shared libraries they need in ``site-packages/nvidia_pytriton.libs``. As
pytriton itself does, the server tree is copied somewhere writable with the stub of *this*
interpreter's version placed beside the python backend, and the server is started with:

- ``LD_LIBRARY_PATH``: this interpreter's libpython first (the stub links ``libpython3.X.so``;
  without it the system's libpython of another patch level is picked up, with the wrong stdlib),
  then ``nvidia_pytriton.libs``;
- ``PATH``: this virtual environment's ``bin`` first. The stub embeds Python, which looks for
  ``python3`` on PATH to find its prefix; finding the venv's one (and its ``pyvenv.cfg``) makes
  model.py import numpy and onnxruntime from this environment's site-packages.

Only pytriton's files are used: its Python package is not imported (its own dependencies are
deliberately not installed, see scripts/bootstrap).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Mapping
from contextlib import suppress
from pathlib import Path
from typing import IO

from visionloop.testing.ports import free_port

HOST = "127.0.0.1"


class TritonStartError(RuntimeError):
    """The server did not come up; the message carries its log."""


def wheel_paths() -> tuple[Path, Path]:
    """The wheel's ``pytriton/tritonserver`` tree and its ``nvidia_pytriton.libs`` folder."""
    spec = importlib.util.find_spec("pytriton")  # finds the package without running its __init__
    if spec is None or not spec.submodule_search_locations:
        raise TritonStartError(
            "nvidia-pytriton is not installed: .venv/bin/pip install --no-deps nvidia-pytriton==0.7.0"
        )
    package = Path(next(iter(spec.submodule_search_locations)))
    return package / "tritonserver", package.parent / "nvidia_pytriton.libs"


def prepare_distribution(destination: Path) -> Path:
    """Copy the server tree to ``destination`` with this Python's stub in backends/python."""
    source, _ = wheel_paths()
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = source / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        raise TritonStartError(f"nvidia-pytriton has no python backend stub for Python {version} ({stub})")
    shutil.copytree(source, destination, ignore=shutil.ignore_patterns("python_backend_stubs"), dirs_exist_ok=True)
    shutil.copy2(stub, destination / "backends" / "python" / "triton_python_backend_stub")
    return destination


def server_environment() -> dict[str, str]:
    _, libs = wheel_paths()
    library_path = [str(libs)]
    libpython_dir = sysconfig.get_config_var("LIBDIR")
    libpython = sysconfig.get_config_var("LDLIBRARY")
    if libpython_dir and libpython and (Path(libpython_dir) / libpython).exists():
        library_path.insert(0, libpython_dir)
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.pathsep.join([*library_path, env.get("LD_LIBRARY_PATH", "")]).rstrip(os.pathsep)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    # The stub must not pick up a PYTHONHOME/PYTHONPATH meant for another interpreter.
    env.pop("PYTHONHOME", None)
    return env


class TritonServer:
    """One ``tritonserver`` process, explicit model control, loopback only."""

    def __init__(
        self,
        repository: Path | str,
        workdir: Path,
        shm_prefix: str = "visionloop-",
        environment: Mapping[str, str] | None = None,
    ) -> None:
        # A folder, or a URL Triton reads itself (s3://host:port/bucket/prefix, with the store's
        # credentials in ``environment``: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION).
        self.repository = repository
        self.environment = dict(environment or {})
        self.workdir = workdir
        self.grpc_port = free_port()
        self.http_port = free_port()
        self.metrics_port = free_port()
        self.log_path = workdir / "tritonserver.log"
        # Unique per server so that two servers on one machine never share python-backend memory.
        self.shm_prefix = f"{shm_prefix}{uuid.uuid4().hex[:8]}-"
        self._process: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None

    @property
    def grpc_url(self) -> str:
        return f"{HOST}:{self.grpc_port}"

    def command(self, distribution: Path) -> list[str]:
        return [
            str(distribution / "bin" / "tritonserver"),
            f"--model-repository={self.repository}",
            "--model-control-mode=explicit",
            f"--backend-directory={distribution / 'backends'}",
            f"--cache-directory={distribution / 'caches'}",
            f"--grpc-address={HOST}",
            f"--grpc-port={self.grpc_port}",
            f"--http-address={HOST}",
            f"--http-port={self.http_port}",
            f"--metrics-address={HOST}",
            f"--metrics-port={self.metrics_port}",
            "--allow-gpu-metrics=false",
            f"--backend-config=python,shm-region-prefix-name={self.shm_prefix}",
            "--exit-timeout-secs=10",
            "--log-verbose=0",
        ]

    def start(self, timeout: float = 60.0) -> None:
        """Start the server and wait until it reports live; TritonStartError (with the log) if not."""
        if isinstance(self.repository, Path):
            self.repository.mkdir(parents=True, exist_ok=True)
        distribution = prepare_distribution(self.workdir / "tritonserver")
        self._log_file = self.log_path.open("wb")
        self._process = subprocess.Popen(
            self.command(distribution),
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            env={**server_environment(), **self.environment},
            cwd=self.workdir,
            start_new_session=True,  # its python-backend stubs form one group we can end together
        )
        self._wait_live(timeout)

    def _wait_live(self, timeout: float) -> None:
        assert self._process is not None
        url = f"http://{HOST}:{self.http_port}/v2/health/live"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                code = self._process.returncode
                self.stop()
                raise TritonStartError(f"tritonserver exited with {code}:\n{self.log()}")
            with suppress(urllib.error.URLError, OSError), urllib.request.urlopen(url, timeout=1.0) as response:
                if response.status == 200:
                    return
            time.sleep(0.1)
        self.stop()
        raise TritonStartError(f"tritonserver was not live within {timeout:g} s:\n{self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM (Triton unloads its models and ends the stubs), SIGKILL to the group if stuck."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                with suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        self._remove_shared_memory()

    def _remove_shared_memory(self) -> None:
        # A killed server leaves its python-backend regions in /dev/shm; a clean exit leaves none.
        for region in Path("/dev/shm").glob(f"{self.shm_prefix}*"):
            with suppress(OSError):
                region.unlink()
