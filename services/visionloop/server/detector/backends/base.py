"""What every inference backend offers the detector."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from visionloop.lib.inference import ModelError
from visionloop.runtime.errors import Unavailable

# A model that cannot be loaded or run; the message says why. The library's in-process inference
# raises the same error, for the folders and sessions it opens for the detector.
BackendError = ModelError


class BackendUnavailable(BackendError, Unavailable):
    """The backend could not answer this time (a server unreachable, a model gone): robots see
    UNAVAILABLE and retry, as they do for any other passing outage."""

    def __init__(self, message: str) -> None:
        Unavailable.__init__(self, message)


class Backend(Protocol):
    """Runs one model on batches of pre-processed images.

    ``infer`` takes a float32 batch shaped like the model's input (N first) and returns the
    outputs named in the model's ``output.tensor_names``, in that order, each with N first.
    Implementations never block the event loop. Optional extras the detector uses when present:
    ``infer_frames(frames)`` (per-frame tensors, stacked by the backend where it pays) and
    ``run_blocking(frames)`` (the same on the calling worker thread, for a lone frame).
    """

    kind: str  # "onnxruntime" or "triton"
    max_batch_size: int
    max_in_flight: int  # batches the micro-batcher may run at once

    async def infer(self, batch: np.ndarray) -> list[np.ndarray]: ...

    async def close(self) -> None: ...


def stack(frames: Sequence[np.ndarray]) -> np.ndarray:
    """One batch from per-frame CHW tensors; a lone frame becomes a view, as copying megabytes buys nothing."""
    return frames[0][None] if len(frames) == 1 else np.stack(frames)
