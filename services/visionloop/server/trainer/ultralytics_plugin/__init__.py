"""The Ultralytics trainer plug-in: ``TRAINER_PLUGIN=visionloop.server.trainer.ultralytics_plugin:UltralyticsTrainer``.

Needs Ultralytics installed beside VisionLoop (AGPL-3.0: an opt-in install, never a dependency of
VisionLoop's packages). ``plugin.py`` is the plug-in, ``dataset.py`` the conversion of a training's
images and annotations to Ultralytics' layout, ``run.py`` the resumable training, ``weights.py`` the
``pytorch`` model files, ``predict.py`` the detections.
"""

from __future__ import annotations

import os
from typing import Any

# Before any module here imports Ultralytics, which reads them once: offline it never reaches the
# network (weights, fonts, datasets, update checks), without auto-install it never pip-installs.
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "0")
os.environ.setdefault("YOLO_VERBOSE", "0")


def __getattr__(name: str) -> Any:
    """``UltralyticsTrainer`` on first use, so that importing the package alone needs no Ultralytics."""
    if name == "UltralyticsTrainer":
        from visionloop.server.trainer.ultralytics_plugin.plugin import UltralyticsTrainer

        return UltralyticsTrainer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
