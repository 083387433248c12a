"""The reference CenterNet's predictions in PyTorch, decoded exactly as the detector decodes its export.

Pre-processing is the detector's ``prepare`` (letterbox), the outputs are the export's layout
(``model.Exported``), and decoding, NMS and the mapping back to the frame are the detector's own
``postprocess.to_detections`` with the model.json the model would be served with. So scores here
are the scores the served model would get.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

import numpy as np
import torch

from visionloop.lib import postprocess
from visionloop.lib.centernet.model import CenterNet, Exported, model_json
from visionloop.lib.evaluation import Prediction, Truth, evaluate, predictions_from_detections
from visionloop.lib.model_format.model_json import model_info_from_json, parse_model_json
from visionloop.lib.preprocess import Frame, prepare
from visionloop.lib.training_data import Annotation, Sample

IOU_THRESHOLD, MAX_OBJECTS = 0.45, 100  # model_json's detection defaults


def predict(
    model: CenterNet,
    images: Sequence[np.ndarray],
    categories: Sequence[tuple[str, str]],
    input_size: tuple[int, int],
    score_threshold: float = 0.05,
    batch_size: int = 16,
) -> list[list[Prediction]]:
    """Per image (HxWx3 uint8 BGR, any size): predictions in that image's pixels, highest score first.

    ``categories`` are (name, "box" | "point") in the model's output order; points come back as
    ``Prediction(point=...)`` at the decoded box centre, as the detector serves them.
    """
    width, height = input_size
    raw = json.dumps(model_json(categories, width, height)).encode()
    info = model_info_from_json(parse_model_json(raw))  # what the detector reads from the model zip
    settings = postprocess.Settings(score_threshold, IOU_THRESHOLD, MAX_OBJECTS, class_agnostic=False)
    device = next(model.parameters()).device
    exported = Exported(model)
    was_training = model.training
    model.eval()
    result: list[list[Prediction]] = []
    try:
        for first in range(0, len(images), batch_size):
            chunk = images[first : first + batch_size]
            prepared = [prepare(Frame(image, "bgr"), info.input, info.input.rescale_type) for image in chunk]
            batch = torch.from_numpy(np.stack([tensor for tensor, _ in prepared])).to(device)
            with torch.no_grad():
                heatmap, size, offset = (x.cpu().numpy() for x in exported(batch))
            for i, (image, (_, transform)) in enumerate(zip(chunk, prepared, strict=True)):
                detections = postprocess.to_detections(
                    info, [heatmap[i], size[i], offset[i]], transform, (image.shape[1], image.shape[0]), settings
                )
                found = predictions_from_detections(detections)
                result.append(sorted(found, key=lambda p: -p.score))
    finally:
        model.train(was_training)
    return result


def truths(annotations: Sequence[Annotation]) -> list[Truth]:
    """World annotations of one frame as evaluation truths."""
    return [Truth(a.category, box=a.box, point=a.point) for a in annotations]


def map50_evaluator(
    samples: Sequence[Sample], categories: Sequence[tuple[str, str]], input_size: tuple[int, int]
) -> Callable[[CenterNet], float]:
    """A scorer for ``TrainingRun(evaluate=...)``: the model's mAP@0.5 on ``samples``."""
    images = [sample.image for sample in samples]
    expected = [truths(sample.annotations) for sample in samples]
    names = [name for name, _ in categories]

    def score(model: CenterNet) -> float:
        return evaluate(expected, predict(model, images, categories, input_size), names).map50

    return score
