"""ONNX Runtime in-process: the embedded default."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from visionloop.detector.backends.base import BackendError, stack
from visionloop.runtime.threads import named_executor


class OnnxRuntimeBackend:
    kind = "onnxruntime"
    max_in_flight = 1  # one run at a time: ORT already spreads a run over the cores

    def __init__(self, session: object, input_name: str, output_names: Sequence[str], max_batch_size: int) -> None:
        self._session = session
        self.input_name = input_name
        self.output_names = list(output_names)
        self.max_batch_size = max_batch_size
        # One runner thread: ORT parallelises inside a run; more runners only fight over the cores.
        self._executor = named_executor(1, "onnxruntime")
        self._buffer: np.ndarray | None = None  # the runner thread's batch buffer (runs never overlap)

    @classmethod
    async def load(
        cls, model_path: Path, input_name: str, output_names: Sequence[str], max_batch_size: int = 16
    ) -> OnnxRuntimeBackend:
        """Build the session off the event loop; BackendError when the file is not a usable model."""

        def build() -> object:
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.intra_op_num_threads = max(1, min(4, os.cpu_count() or 1))
            # Spinning workers would steal the cores that decode and post-process the next frames.
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            try:
                session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
            except Exception as error:  # ORT raises its own exception types for broken files
                raise BackendError(f"ONNX Runtime cannot load {model_path.name}: {error}") from None
            inputs = {i.name for i in session.get_inputs()}
            outputs = {o.name for o in session.get_outputs()}
            if input_name not in inputs:
                raise BackendError(f"model has no input {input_name!r} (inputs: {', '.join(sorted(inputs))})")
            missing = [name for name in output_names if name not in outputs]
            if missing:
                raise BackendError(f"model has no output {missing[0]!r} (outputs: {', '.join(sorted(outputs))})")
            return session

        session = await asyncio.to_thread(build)
        return cls(session, input_name, output_names, max_batch_size)

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
        if len(frames) == 1:
            return self._run(frames[0][None])
        shape = frames[0].shape
        buffer = self._buffer
        if buffer is None or buffer.shape[1:] != shape or len(buffer) < len(frames):
            buffer = self._buffer = np.empty((max(len(frames), self.max_batch_size), *shape), np.float32)
        batch = buffer[: len(frames)]
        np.stack(frames, out=batch)
        return self._run(batch)

    def _run(self, batch: np.ndarray) -> list[np.ndarray]:
        feed = {self.input_name: np.ascontiguousarray(batch, dtype=np.float32)}
        return self._session.run(self.output_names, feed)  # type: ignore[attr-defined,no-any-return]

    async def close(self) -> None:
        self._executor.shutdown(wait=False)
