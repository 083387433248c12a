"""ONNX Runtime in-process: the embedded default."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from visionloop.runtime.threads import named_executor
from visionloop.server.detector.backends.base import BackendError, stack


class OnnxRuntimeBackend:
    """One ONNX Runtime session. A graph with a fixed batch dimension (Ultralytics' default export
    takes exactly one image) gets batches of at most that many frames, padded up to it when fewer
    came, so the micro-batcher never sends it more; a float16 input gets its tensor cast."""

    kind = "onnxruntime"
    max_in_flight = 1  # one run at a time: ORT already spreads a run over the cores

    def __init__(
        self,
        session: object,
        input_name: str,
        output_names: Sequence[str],
        max_batch_size: int,
        fixed_batch: int = 0,
        input_type: type[np.floating] = np.float32,
    ) -> None:
        self._session = session
        self.input_name = input_name
        self.output_names = list(output_names)
        self.fixed_batch = fixed_batch  # 0: any batch size
        self.max_batch_size = fixed_batch or max_batch_size
        self._input_type = input_type
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
        kind = next(i.type for i in session.get_inputs() if i.name == input_name)  # type: ignore[attr-defined]
        input_type = np.float16 if kind == "tensor(float16)" else np.float32
        return cls(session, input_name, output_names, max_batch_size, fixed_batch, input_type)

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
        """Run ``batch`` (padded up to a fixed batch size here when short); the outputs of its first
        ``frames`` images (all of them by default)."""
        count = len(batch) if frames is None else frames
        if self.fixed_batch and len(batch) != self.fixed_batch:
            if len(batch) > self.fixed_batch:
                raise BackendError(f"a batch of {len(batch)} images; the model takes {self.fixed_batch} at a time")
            padded = np.zeros((self.fixed_batch, *batch.shape[1:]), np.float32)
            padded[: len(batch)] = batch
            batch = padded
        feed = {self.input_name: np.ascontiguousarray(batch, dtype=self._input_type)}
        outputs = self._session.run(self.output_names, feed)  # type: ignore[attr-defined]
        return [output[:count] for output in outputs] if count != len(batch) else outputs

    async def close(self) -> None:
        self._executor.shutdown(wait=False)
