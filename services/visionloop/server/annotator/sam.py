"""The SAM backend: exported Segment Anything encoder and decoder ONNX files.

The interface is the one of SAM's official ONNX export (``scripts/export_onnx_model.py`` for the
decoder, the image encoder exported on its own):

- encoder: ``image`` float32 [1, 3, 1024, 1024] (RGB resized so the longest side is 1024, normalised
  with SAM's pixel mean and std, zero-padded right and bottom) -> ``image_embeddings`` [1, 256, 64, 64]
- decoder: ``image_embeddings``, ``point_coords`` [1, N, 2] (in the 1024 frame), ``point_labels`` [1, N]
  (1 object, 0 background, 2/3 box corners, -1 padding), ``mask_input`` [1, 1, 256, 256],
  ``has_mask_input`` [1], ``orig_im_size`` [2] (height, width) -> ``masks``, ``iou_predictions``,
  ``low_res_masks``; mask logits above 0 are the object.

The embedding is computed once per image (cached by image id); each prompt runs only the decoder.
Masks the decoder does not already return at the original size (a 256 or 1024 square) are
scaled, cropped to the unpadded part and resized back to the original image.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

from visionloop.runtime.errors import FailedPrecondition, InvalidArgument
from visionloop.server.annotator.classical import Result, keep_prompted
from visionloop.server.annotator.prompts import Prompts

SIZE = 1024
MEAN = np.array([123.675, 116.28, 103.53], np.float32)
STD = np.array([58.395, 57.12, 57.375], np.float32)
ENCODER_INPUTS = {"image"}
DECODER_INPUTS = {"image_embeddings", "point_coords", "point_labels", "mask_input", "has_mask_input", "orig_im_size"}
CACHED_EMBEDDINGS = 16


def _session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types for unreadable models
        raise FailedPrecondition(f"cannot load SAM model {path.name}: {exc}") from None


class SamBackend:
    """Both ONNX sessions and the per-image embedding cache; thread-safe."""

    name = "sam"

    def __init__(self, encoder: Path, decoder: Path) -> None:
        self.encoder = _session(encoder)
        self.decoder = _session(decoder)
        for label, session, wanted in (
            ("encoder", self.encoder, ENCODER_INPUTS),
            ("decoder", self.decoder, DECODER_INPUTS),
        ):
            names = {i.name for i in session.get_inputs()}
            if names != wanted:
                raise FailedPrecondition(f"SAM {label} inputs are {sorted(names)}, expected {sorted(wanted)}")
        self.encodings = 0  # how often the encoder ran
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def preprocess(image: np.ndarray) -> tuple[np.ndarray, float]:
        """BGR image -> the encoder's padded, normalised 1024 square, and the resize scale."""
        height, width = image.shape[:2]
        scale = SIZE / max(height, width)
        resized = cv2.resize(image, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_LINEAR)
        rgb = (resized[..., ::-1].astype(np.float32) - MEAN) / STD
        padded = np.zeros((SIZE, SIZE, 3), np.float32)
        padded[: rgb.shape[0], : rgb.shape[1]] = rgb
        return padded.transpose(2, 0, 1)[None], scale

    def embedding(self, image_id: str, image: np.ndarray) -> np.ndarray:
        with self._lock:
            cached = self._cache.get(image_id)
            if cached is not None:
                self._cache.move_to_end(image_id)
                return cached
            tensor, _ = self.preprocess(image)
            embedding = self.encoder.run(["image_embeddings"], {"image": tensor})[0]
            self.encodings += 1
            self._cache[image_id] = embedding
            while len(self._cache) > CACHED_EMBEDDINGS:
                self._cache.popitem(last=False)
            return embedding

    def __call__(self, image_id: str, image: np.ndarray) -> SamImage:
        return SamImage(self, self.embedding(image_id, image), image.shape[0], image.shape[1])


class SamImage:
    name = "sam"

    def __init__(self, backend: SamBackend, embedding: np.ndarray, height: int, width: int) -> None:
        self.backend = backend
        self.embedding = embedding
        self.height, self.width = height, width
        self.scale = SIZE / max(height, width)

    def segment(self, prompts: Prompts) -> Result:
        if prompts.box is None and not prompts.positives:
            raise InvalidArgument("start with a box or a positive point: there is nothing to segment yet")
        coords = [(c.x, c.y) for c in prompts.clicks]
        labels = [1.0 if c.positive else 0.0 for c in prompts.clicks]
        if prompts.box is not None:
            b = prompts.box
            coords += [(b.x0, b.y0), (b.x1, b.y1)]
            labels += [2.0, 3.0]
        else:
            coords.append((0.0, 0.0))
            labels.append(-1.0)
        feeds = {
            "image_embeddings": self.embedding,
            "point_coords": (np.array(coords, np.float32) * self.scale)[None],
            "point_labels": np.array(labels, np.float32)[None],
            "mask_input": np.zeros((1, 1, 256, 256), np.float32),
            "has_mask_input": np.zeros(1, np.float32),
            "orig_im_size": np.array([self.height, self.width], np.float32),
        }
        with self.backend._lock:
            masks, scores = self.backend.decoder.run(["masks", "iou_predictions"], feeds)[:2]
        best = int(np.argmax(scores.reshape(-1))) if scores.size > 1 else 0
        logits = np.asarray(masks).reshape(-1, *masks.shape[-2:])[best]
        mask = self.to_original(logits) > 0
        return Result(keep_prompted(mask, prompts.positives), float(np.clip(scores.reshape(-1)[best], 0, 1)))

    def to_original(self, logits: np.ndarray) -> np.ndarray:
        """Logits at the original size; a square in the padded 1024 frame (any side) is brought back."""
        if logits.shape == (self.height, self.width):
            return logits
        side = logits.shape[-1]
        frame = side / SIZE
        valid_h, valid_w = round(self.height * self.scale * frame), round(self.width * self.scale * frame)
        cropped = np.ascontiguousarray(logits[: max(1, valid_h), : max(1, valid_w)], np.float32)
        return cv2.resize(cropped, (self.width, self.height), interpolation=cv2.INTER_LINEAR)
