"""The dataset tools people use (datumaro, supervision; Ultralytics), run from .venv-formats (.venv-ultralytics)
in subprocesses.

Their numpy/opencv/pillow pins conflict with .venv's, so ``scripts/bootstrap`` gives them a
virtual environment of their own; the scripts beside this file run there and answer in JSON.
"""

from __future__ import annotations

import json
import subprocess
import zipfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PYTHON = ROOT / ".venv-formats" / "bin" / "python"
ULTRALYTICS_PYTHON = ROOT / ".venv-ultralytics" / "bin" / "python"  # its own: Ultralytics brings its own torch
HERE = Path(__file__).resolve().parent


def run(script: str, command: str, path: Path, python: Path = PYTHON) -> Any:
    """``script`` (a file beside this one) with ``command path`` in .venv-formats (or ``python``'s
    environment); its JSON output, if any."""
    if not python.exists():
        raise RuntimeError(f"{python} is missing: run scripts/bootstrap, which installs the dataset tools")
    done = subprocess.run(
        [str(python), str(HERE / script), command, str(path)], capture_output=True, text=True, timeout=300
    )
    if done.returncode != 0:
        raise RuntimeError(f"{script} {command} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout) if done.stdout.strip() else None


def zip_folder(folder: Path, target: Path, top: str = "") -> bytes:
    """The folder as a zip (under ``top``/ when given, as zipping a folder does)."""
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, str(Path(top) / path.relative_to(folder)) if top else path.relative_to(folder))
    return target.read_bytes()


def unzip(data: bytes, folder: Path) -> Path:
    target = folder / "unzipped"
    target.mkdir(parents=True)
    zip_path = folder / "export.zip"
    zip_path.write_bytes(data)
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(target)
    return target
