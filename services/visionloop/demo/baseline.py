"""The demo's yardstick: random picks at the same label budget, trained beside the loop.

Each round the loop labels the images its acquisition picked; the baseline labels as many frames
drawn uniformly from everything the robots saw in that round, trains on all it labelled so far
continuing from its previous model (round 1's, downloaded from the hub, to start: both start
equal), and is scored on the same held-out frames. It runs in this process with the experiment's
``Bench`` (the trainer's own ``TrainingRun``, no services), so the demo's table shows what the
loop's picks bought over picks at random.
"""

from __future__ import annotations

import random
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

from visionloop.client.loop import LoopClient
from visionloop.demo.config import LoopConfig
from visionloop.demo.experiment import Bench
from visionloop.demo.scenes import Frame
from visionloop.lib.centernet.artifacts import load_pytorch
from visionloop.lib.centernet.model import CenterNet
from visionloop.lib.training_data import Sample

_SEED = 1  # the baseline's draws apart from the robots' and the experiment's


class RandomBaseline:
    """Start with ``start(hub, version, bootstrap)`` after round 1, then ``round`` after each later one."""

    def __init__(self, config: LoopConfig, workdir: Path) -> None:
        self.config = config
        self.workdir = workdir
        self.bench = Bench(config, workdir)
        self.picker = random.Random(config.seed * 1000 + _SEED)
        self.trained: list[Sample] = []
        self.model: CenterNet | None = None

    def start(self, hub: LoopClient, version: str, bootstrap: Sequence[Frame]) -> None:
        """Begin from the hub's model ``version`` (round 1's), trained on ``bootstrap``."""
        archive = self.workdir / f"model-{version}.zip"
        hub.download_model(version, "pytorch", archive)
        folder = Path(tempfile.mkdtemp(prefix="model-", dir=self.workdir))
        with zipfile.ZipFile(archive) as opened:
            opened.extractall(folder)
        self.model, _ = load_pytorch(folder)
        self.trained = [frame.sample() for frame in bootstrap]

    def round(self, frames: Sequence[Frame], count: int) -> float:
        """Label ``count`` of ``frames`` at random, train, and score: mAP@0.5 on the held-out frames."""
        if self.model is None:
            raise RuntimeError("start the baseline from round 1's model first")
        chosen = self.picker.sample(list(frames), min(count, len(frames)))
        self.trained += [frame.sample() for frame in chosen]
        self.model, scores = self.bench.train(self.trained, self.model, "random picks")
        return scores.map50
