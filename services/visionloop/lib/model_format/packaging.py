"""Model zips as the hub stores them: every file of a model folder, ``model.json`` first."""

from __future__ import annotations

from pathlib import Path

from visionloop.lib.model_format.model_json import MODEL_JSON, pack

__all__ = ["MODEL_JSON", "zip_folder"]


def zip_folder(folder: Path, path: Path) -> Path:
    """A model zip of every file in ``folder`` (model.json first: the hub rewrites that entry)."""
    return pack(folder, path)
