"""Exports of the reference model from several threads of one process (the trainer and the converter
in embedded mode): torch.onnx.export keeps its state in module globals, so they must take turns."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import onnx

from visionloop.lib.centernet.model import CenterNet, export_onnx


def test_exports_from_several_threads_at_once_all_succeed(tmp_path: Path) -> None:
    model = CenterNet(classes=2, width=8)

    def one(index: int) -> Path:
        return export_onnx(model, tmp_path / f"{index}.onnx", 64, 64)

    with ThreadPoolExecutor(4) as pool:
        paths = list(pool.map(one, range(12)))
    for path in paths:
        onnx.checker.check_model(onnx.load(str(path)))
