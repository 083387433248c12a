"""Ultralytics' own exports, made once per test session (and kept in pytest's cache between runs
while make_exports.py and the pins stay the same) by tests/ultralytics/make_exports.py in
.venv-ultralytics (scripts/bootstrap builds it)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.detector.conftest import hub  # noqa: F401  (the real hub the detector tests use)
from tests.trainer.conftest import project  # noqa: F401  (a hub with an annotated project, for the trainer plug-in)

HERE = Path(__file__).resolve().parent
PYTHON = HERE.parents[1] / ".venv-ultralytics" / "bin" / "python"


@dataclass(frozen=True)
class Exports:
    folder: Path
    predictions: dict[str, dict[str, Any]]  # export name -> frame file name -> Ultralytics' answer

    def onnx(self, name: str) -> Path:
        return self.folder / f"{name}.onnx"

    def frames(self) -> list[Path]:
        return sorted((self.folder / "frames").glob("*.png"))


def _key() -> str:
    digest = hashlib.sha256()
    for name in ("make_exports.py", "requirements.txt"):
        digest.update((HERE / name).read_bytes())
    return digest.hexdigest()[:16]


@pytest.fixture(scope="session")
def exports(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Exports:
    if not PYTHON.exists():
        raise RuntimeError(f"{PYTHON} is missing: run scripts/bootstrap, which installs Ultralytics there")
    cache = pytestconfig.cache
    folder = cache.mkdir(f"ultralytics-exports-{_key()}") if cache is not None else tmp_path_factory.mktemp("exports")
    if not (folder / "predictions.json").is_file():
        shutil.rmtree(folder, ignore_errors=True)
        env = {**os.environ, "YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "0", "YOLO_CONFIG_DIR": str(folder / "config")}
        done = subprocess.run(
            [str(PYTHON), str(HERE / "make_exports.py"), str(folder)],
            capture_output=True,
            text=True,
            timeout=1500,
            env=env,
        )
        if done.returncode != 0:
            raise RuntimeError(f"make_exports.py failed:\n{done.stdout[-2000:]}\n{done.stderr[-6000:]}")
    return Exports(folder, json.loads((folder / "predictions.json").read_text()))
