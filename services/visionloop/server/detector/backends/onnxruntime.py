"""ONNX Runtime in-process: the embedded default."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from visionloop.lib.inference import OnnxSession
from visionloop.runtime.threads import named_executor
from visionloop.server.detector.backends.base import stack


class OnnxRuntimeBackend:
    """One ONNX Runtime session. A graph with a fixed batch dimension (Ultralytics' default export
    takes exactly one image) gets batches of at most that many frames, padded up to it when fewer
    came, so the micro-batcher never sends it more; a float16 input gets its tensor cast."""

    kind = "onnxruntime"
    max_in_flight = 1  # one run at a time: ORT already spreads a run over the cores

    def __init__(self, session: OnnxSession, max_batch_size: int) -> None:
        self._session = session
        self.input_name = session.input_name
        self.output_names = session.output_names
        self.fixed_batch = session.fixed_batch  # 0: any batch size
        self.max_batch_size = session.fixed_batch or max_batch_size
        # One runner thread: ORT parallelises inside a run; more runners only fight over the cores.
        self._executor = named_executor(1, "onnxruntime")
        self._buffer: np.ndarray | None = None  # the runner thread's batch buffer (runs never overlap)

    @classmethod
    async def load(
        cls,
        model_path: Path,
        input_name: str,
        output_names: Sequence[str],
        max_batch_size: int = 16,
        fixed_batch: int = 0,
    ) -> OnnxRuntimeBackend:
        """Build the session off the event loop; BackendError when the file is not a usable model.
        ``fixed_batch``: the images per run the graph takes when its batch dimension is fixed."""
        session = await asyncio.to_thread(OnnxSession.load, model_path, input_name, output_names, fixed_batch)
        return cls(session, max_batch_size)

    async def infer(self, batch: np.ndarray) -> list[np.ndarray]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._run, batch)

    async def infer_frames(self, frames: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Per-frame tensors, stacked on the runner thread into a buffer kept between runs: stacking a
        dozen 640x640 frames into fresh memory took ~40 ms of page faults, on the event loop at that."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._run_frames, frames)

    def run_blocking(self, frames: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Per-frame tensors through the session on the calling thread (the detector's lone-frame
        path, which holds the batcher's only slot meanwhile, so runs still never overlap)."""
        return self._run(stack(frames))

    def _run_frames(self, frames: Sequence[np.ndarray]) -> list[np.ndarray]:
        if len(frames) == 1 and self.fixed_batch in (0, 1):
            return self._run(frames[0][None])
        shape = frames[0].shape
        rows = self.fixed_batch or len(frames)
        buffer = self._buffer
        if buffer is None or buffer.shape[1:] != shape or len(buffer) < rows:
            buffer = self._buffer = np.zeros((max(rows, self.max_batch_size), *shape), np.float32)
        np.stack(frames, out=buffer[: len(frames)])
        return self._run(buffer[:rows], len(frames))

    def _run(self, batch: np.ndarray, frames: int | None = None) -> list[np.ndarray]:
        return self._session.run(batch, frames)

    async def close(self) -> None:
        self._executor.shutdown(wait=False)
