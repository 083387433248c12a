"""The command line: help everywhere, clear errors for ports that are taken."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest

from tests.harness import VISIONLOOP, base_env


@pytest.mark.parametrize(
    "args", [["--help"], ["serve", "--help"], ["up", "--help"], ["settings", "--help"], ["--version"]]
)
def test_help(args: list[str], tmp_path: Path) -> None:
    result = subprocess.run([VISIONLOOP, *args], capture_output=True, text=True, timeout=60, env=base_env(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()


def test_settings_lists_environment_names(tmp_path: Path) -> None:
    result = subprocess.run(
        [VISIONLOOP, "settings", "detector"], capture_output=True, text=True, timeout=60, env=base_env(tmp_path)
    )
    assert result.returncode == 0
    for name in ("LOOP_HOST", "MIN_UNCERTAIN_THRESHOLD", "MAX_UNCERTAIN_THRESHOLD", "TRITON_URL", "VISIONLOOP_PORT"):
        assert name in result.stdout


def test_port_in_use_is_one_clear_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [VISIONLOOP, "serve", "converter", "--port", str(port), "--metrics-port", "-1"],
            capture_output=True,
            text=True,
            timeout=60,
            env=base_env(tmp_path),
        )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f"visionloop: cannot listen on 127.0.0.1:{port}"] or (
        f"127.0.0.1:{port}" in result.stderr.strip().splitlines()[-1]
    )
