"""Multi-worker training under torchrun (gloo on CPU) and model-state averaging."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from visionloop.lib.centernet.model import CenterNet
from visionloop.server.trainer.reference.distributed import average_states
from visionloop.server.trainer.reference.train import LAST

MARGIN = 0.05  # two workers may end a little apart from one (other BatchNorm batches, per-rank loss scale)
FLOOR = 0.4  # an untrained model scores about 0.0; a learned one clearly more


def test_average_states_weights_floats_and_keeps_counters() -> None:
    a = {"w": torch.tensor([1.0, 2.0]), "h": torch.tensor([1.0], dtype=torch.float16), "n": torch.tensor(3)}
    b = {"w": torch.tensor([5.0, 6.0]), "h": torch.tensor([3.0], dtype=torch.float16), "n": torch.tensor(9)}
    mean = average_states([a, b])
    assert torch.equal(mean["w"], torch.tensor([3.0, 4.0]))
    assert mean["h"].dtype == torch.float16
    assert torch.equal(mean["h"], torch.tensor([2.0], dtype=torch.float16))
    assert torch.equal(mean["n"], torch.tensor(3))  # a counter, not a weight: the first state's
    weighted = average_states([a, b], weights=[1, 3])
    assert torch.equal(weighted["w"], torch.tensor([4.0, 5.0]))
    mean["n"] += 1
    assert a["n"].item() == 3  # a copy, not a view into the input

    with pytest.raises(ValueError, match="other keys"):
        average_states([a, {"w": b["w"]}])
    with pytest.raises(ValueError, match="shape"):
        average_states([a, {**b, "w": torch.zeros(3)}])
    with pytest.raises(ValueError, match="weights"):
        average_states([a, b], weights=[1])


def test_averaged_models_load_and_sit_between_their_parents() -> None:
    torch.manual_seed(0)
    first, second = CenterNet(2, 8), CenterNet(2, 8)
    model = CenterNet(2, 8)
    model.load_state_dict(average_states([first.state_dict(), second.state_dict()]))
    x, y, mid = first.neck[0].weight, second.neck[0].weight, model.neck[0].weight
    assert torch.allclose(mid, (x + y) / 2)


def _torchrun(workers: int, folder: Path) -> dict[str, Any]:
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",  # what the torchrun script runs
        "--standalone",
        f"--nproc_per_node={workers}",
        "-m",
        "visionloop.testing.synthetic.distributed",
        *("--seed", "0", "--count", "96", "--holdout", "32", "--epochs", "12", "--resolution", "160"),
        *("--preset", "easy"),  # learnt well enough in 12 short epochs to tell learning from noise
        *("--out", str(folder)),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads((folder / "result.json").read_text())


@pytest.mark.slow
def test_two_workers_learn_as_well_as_one(tmp_path: Path) -> None:
    """Same frames, same global batch: the two-rank model is about as good on held-out frames."""
    two = _torchrun(2, tmp_path / "two")
    one = _torchrun(1, tmp_path / "one")

    assert (two["workers"], one["workers"]) == (2, 1)
    assert torch.load(tmp_path / "two" / "checkpoints" / LAST, weights_only=True)["identity"]["world_size"] == 2
    assert one["map50"] > FLOOR, one
    assert two["map50"] >= one["map50"] - MARGIN, (two, one)
    state = torch.load(tmp_path / "two" / "model.pt", weights_only=True)
    CenterNet(len(two["categories"]), 24).load_state_dict(state)  # a plain state dict, no DDP "module." prefix
