"""The robot client installs alone into a fresh virtual environment and calls a running service."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.harness import REPO, serve

HEAVY = ("torch", "onnxruntime", "opencv-python", "opencv-python-headless", "tritonclient", "visionloop")


@pytest.mark.slow
def test_client_installs_without_heavy_dependencies_and_calls_a_service(tmp_path: Path) -> None:
    # Install from a copy so the build leaves nothing behind in the checkout.
    source = tmp_path / "client-src"
    shutil.copytree(REPO / "clients" / "python", source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    venv = tmp_path / "robot-venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q", str(source)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert install.returncode == 0, install.stderr[-3000:]

    listed = subprocess.run(
        [str(python), "-m", "pip", "list", "--format=freeze", "--disable-pip-version-check"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.lower()
    installed = {line.split("==")[0] for line in listed.splitlines()}
    assert "visionloop-client" in installed
    assert not installed & set(HEAVY), installed & set(HEAVY)
    requires = subprocess.run(
        [str(python), "-m", "pip", "show", "visionloop-client"], capture_output=True, text=True, check=True
    ).stdout
    assert "Requires: grpcio, numpy, protobuf" in requires

    with serve("detector", tmp_path) as proc:
        script = textwrap.dedent(
            f"""
            import numpy as np
            import grpc
            from visionloop.client import DetectorClient

            with DetectorClient("127.0.0.1:{proc.ports()["detector"]}") as client:
                client.wait_ready(timeout=10)
                print(client.build_info().service)
                try:
                    client.detect(np.zeros((48, 64, 3), dtype=np.uint8), camera_id="front")
                except grpc.RpcError as error:
                    print(error.code().name)
            """
        )
        run = subprocess.run([str(python), "-c", script], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    # The detector answers; with no model loaded yet it says so with UNAVAILABLE.
    assert run.stdout.split() == ["detector", "UNAVAILABLE"]
