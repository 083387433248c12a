"""Model zips as the hub stores them: every file of a model folder, ``model.json`` first."""

from __future__ import annotations

import zipfile
from pathlib import Path

MODEL_JSON = "model.json"


def zip_folder(folder: Path, path: Path) -> Path:
    """A model zip of every file in ``folder`` (model.json first: the hub rewrites that entry)."""
    files = sorted((p for p in folder.iterdir() if p.is_file()), key=lambda p: (p.name != MODEL_JSON, p.name))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in files:
            archive.write(file, file.name)
    return path
