"""Multi-worker training through torch.distributed (gloo on CPU, NCCL on GPU), launched with torchrun,
and model-state averaging for workers that train apart.

``TrainingRun`` asks :func:`workers` who it is: a lone process, or one rank of a torchrun job (the
process group is joined here when ``WORLD_SIZE`` > 1). Every rank draws the same global permutation
and trains its shard inside ``DistributedDataParallel``; rank 0 alone evaluates and writes.

``visionloop.testing.synthetic.distributed`` runs a self-contained job on synthetic frames.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel


@dataclass(frozen=True)
class Workers:
    """This process's place in the job: rank, number of ranks, and the device it trains on."""

    rank: int = 0
    size: int = 1
    device: torch.device = torch.device("cpu")  # noqa: RUF009 (immutable)

    @property
    def leader(self) -> bool:
        """Rank 0: the one that evaluates, writes checkpoints and reports progress."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def wrap(self, model: nn.Module) -> nn.Module:
        """DDP around ``model`` (already on ``device``) when there are several ranks; else the model."""
        if not self.distributed:
            return model
        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)

    def any(self, flag: bool) -> bool:
        """True on every rank when it is true on any: all ranks leave a loop at the same batch."""
        if not self.distributed:
            return flag
        value = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item() > 0)

    def sum(self, values: Sequence[float]) -> list[float]:
        """Element-wise sum of ``values`` over all ranks (float64, so counts stay exact)."""
        if not self.distributed:
            return list(values)
        tensor = torch.tensor(list(values), dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor)
        return tensor.tolist()

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank (pickled: small objects such as a checkpoint)."""
        if not self.distributed:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0, device=self.device if self.device.type == "cuda" else None)
        return box[0]

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier(device_ids=[self.device.index] if self.device.type == "cuda" else None)


def workers() -> Workers:
    """This process's :class:`Workers`; joins the process group when torchrun started several ranks.

    NCCL when CUDA is available (one GPU per local rank), gloo on CPU.
    """
    cuda = torch.cuda.is_available()
    if not dist.is_initialized() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    if cuda:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if not dist.is_initialized():
        return Workers(device=device)
    return Workers(dist.get_rank(), dist.get_world_size(), device)


def average_states(
    states: Sequence[Mapping[str, torch.Tensor]], weights: Sequence[float] | None = None
) -> dict[str, torch.Tensor]:
    """The (weighted) mean of model states trained apart, e.g. weighted by each worker's image count.

    Floating-point tensors are averaged (in float64, then cast back); integer buffers such as
    BatchNorm's ``num_batches_tracked`` are counters, not weights, and are taken from the first state.
    """
    if not states:
        raise ValueError("average_states needs at least one state")
    if weights is None:
        weights = [1.0] * len(states)
    if len(weights) != len(states):
        raise ValueError(f"{len(states)} states but {len(weights)} weights")
    total = float(sum(weights))
    if total <= 0 or any(w < 0 for w in weights):
        raise ValueError("weights must be non-negative and not all zero")
    keys = list(states[0])
    for index, state in enumerate(states[1:], start=1):
        if list(state) != keys:
            raise ValueError(f"state {index} has other keys than state 0")
    result: dict[str, torch.Tensor] = {}
    for key in keys:
        first = states[0][key]
        for index, state in enumerate(states[1:], start=1):
            if state[key].shape != first.shape:
                raise ValueError(f"{key}: state {index} has shape {list(state[key].shape)}, not {list(first.shape)}")
        if not first.is_floating_point():
            result[key] = first.detach().clone()
            continue
        mean = sum(s[key].detach().to(torch.float64) * (w / total) for s, w in zip(states, weights, strict=True))
        result[key] = torch.as_tensor(mean).to(first.dtype)
    return result
