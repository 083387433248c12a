"""A real Label Studio for the tests, from .venv-labelstudio (scripts/bootstrap installs it).

The first start of a Label Studio migrates its database (1-2.5 minutes here); the migrated
database is kept as a template in .venv-labelstudio/db-template (rebuilt with the venv, i.e. when
tests/annotator/label_studio/requirements.txt changes) and each test session starts from a copy
(about 10-20 seconds). Label Studio listens on loopback and reaches the bridge there, which it
refuses by default: ML_BLOCK_LOCAL_IP and SSRF_PROTECTION_ENABLED are off, as for a bridge on a
private network.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / ".venv-labelstudio"
EXECUTABLE = VENV / "bin" / "label-studio"
TEMPLATE = VENV / "db-template"
USER, PASSWORD, TOKEN = "annotator@example.com", "visionloop-test-password", "ls-test-token-0123456789abcdef"
START_DEADLINE = 600.0  # a cold start on a busy 2-core machine


@dataclass
class Studio:
    url: str
    token: str
    process: subprocess.Popen[bytes]
    log: Path

    def api(self) -> requests.Session:
        session = requests.Session()
        session.headers["Authorization"] = f"Token {self.token}"
        return session


def _environment(data: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LABEL_STUDIO", "DJANGO"))}
    env.update(
        LABEL_STUDIO_BASE_DATA_DIR=str(data),
        ML_BLOCK_LOCAL_IP="false",
        SSRF_PROTECTION_ENABLED="false",
        LOG_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
    )
    return env


def _template() -> Path:
    """The migrated database, made once (under a lock: several sessions may start together)."""
    if not EXECUTABLE.exists():
        raise RuntimeError(f"{EXECUTABLE} is missing: run scripts/bootstrap, which installs Label Studio")
    lock = VENV / "db-template.lock"
    with lock.open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        if not (TEMPLATE / "label_studio.sqlite3").exists():
            building = VENV / "db-template.building"
            shutil.rmtree(building, ignore_errors=True)
            building.mkdir()
            done = subprocess.run(
                [str(EXECUTABLE), "init", "--quiet", "--data-dir", str(building)],
                env=_environment(building),
                capture_output=True,
                timeout=START_DEADLINE,
                cwd=building,
            )
            if done.returncode != 0:
                raise RuntimeError(f"label-studio init failed:\n{done.stdout[-3000:]!r}\n{done.stderr[-3000:]!r}")
            shutil.rmtree(TEMPLATE, ignore_errors=True)
            building.rename(TEMPLATE)
    return TEMPLATE


def start(folder: Path, port: int) -> Studio:
    data = folder / "data"
    shutil.copytree(_template(), data)
    log = folder / "label-studio.log"
    command = [
        str(EXECUTABLE),
        "start",
        "--no-browser",
        "--internal-host",
        "127.0.0.1",
        "--port",
        str(port),
        "--data-dir",
        str(data),
        "--username",
        USER,
        "--password",
        PASSWORD,
        "--user-token",
        TOKEN,
        "--enable-legacy-api-token",
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, env=_environment(data), stdout=out, stderr=subprocess.STDOUT, cwd=folder, start_new_session=True
        )
    studio = Studio(f"http://127.0.0.1:{port}", TOKEN, process, log)
    deadline = time.monotonic() + START_DEADLINE
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"Label Studio exited with {process.returncode}:\n{log.read_text()[-4000:]}")
        try:
            if requests.get(f"{studio.url}/api/projects", headers={"Authorization": f"Token {TOKEN}"}, timeout=5).ok:
                return studio
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            stop(studio)
            raise RuntimeError(f"Label Studio did not answer in {START_DEADLINE:.0f} s:\n{log.read_text()[-4000:]}")
        time.sleep(0.5)


def stop(studio: Studio) -> None:
    if studio.process.poll() is None:
        os.killpg(studio.process.pid, signal.SIGTERM)
        try:
            studio.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(studio.process.pid, signal.SIGKILL)
            studio.process.wait(30)
