"""The Ultralytics trainer: YOLO detection and segmentation models trained through the plug-in interface.

``TRAINER_PLUGIN=visionloop.server.trainer.ultralytics_plugin:UltralyticsTrainer`` in an environment with
Ultralytics installed (AGPL-3.0: an opt-in install, never a dependency of VisionLoop's packages).
Two variants: ``ultralytics-detect`` (boxes, and points learnt as small boxes) and
``ultralytics-segment`` (outlines and masks). A training starts from, in this order:

1. the base model the training continues from (a version this trainer made: its ``pytorch`` files);
2. the ``model`` hyperparameter: an architecture yaml Ultralytics ships (``yolov8n.yaml``, built
   from scratch), or the name of a ``.pt`` file in ``TRAINER_ULTRALYTICS_WEIGHTS_DIR`` (weights
   a person put there, such as a pretrained ``yolov8n.pt``).

Nothing is downloaded: the package sets ``YOLO_OFFLINE`` and ``YOLO_AUTOINSTALL=0`` before
Ultralytics is imported (unless they are set already), and plots, which fetch a font, are off.
The trained model is exported with Ultralytics' own exporter (dynamic ONNX), and its model.json
comes from the export as ``visionloop models import`` writes it (``visionloop.lib.model_format.onnx_import``).
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch  # noqa: F401  (before Ultralytics, which sets OMP_NUM_THREADS=1 for a torch it imports first)
import ultralytics
from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict
from ultralytics import YOLO
from ultralytics.nn.tasks import guess_model_task, yaml_model_load

from visionloop.common.v1 import category_pb2, detection_pb2
from visionloop.lib.model_format import onnx_import as model_import
from visionloop.lib.model_format.model_json import MODEL_JSON, info_to_json
from visionloop.server.trainer.plugin import CannotTrain, Progress, TrainerPlugin, TrainJob, Variant, Verification
from visionloop.server.trainer.ultralytics_plugin import dataset, run, weights
from visionloop.server.trainer.ultralytics_plugin.predict import Output, detections

DETECT, SEGMENT = "ultralytics-detect", "ultralytics-segment"
TASKS = {DETECT: "detect", SEGMENT: "segment"}
ONNX = "model.onnx"
EXPORT = "export"  # the ONNX export and its model.json, made once per training
START = "start.pt"  # the base model as an Ultralytics checkpoint
OPTIMIZERS = ("auto", "SGD", "MuSGD", "Adam", "Adamax", "AdamW", "NAdam", "RAdam", "RMSprop")

_COMMON: dict[str, Any] = {
    "resolution": 640,
    "epochs": 50,
    "batch_size": 16,
    # Ultralytics steps the optimizer once per this many images (64): on a small set, where an epoch
    # is a few batches, set it to batch_size so every batch is a step.
    "nominal_batch_size": 64,
    "optimizer": "auto",
    "learning_rate": 0.01,
    "flip_rl": True,
    "flip_ud": False,
    "mosaic": True,
    "seed": 0,
    "workers": 0,
}
DEFAULTS = {
    DETECT: {"model": "yolov8n.yaml", **_COMMON, "point_size": 12.0},
    SEGMENT: {"model": "yolov8n-seg.yaml", **_COMMON},
}
LIMITS: dict[str, tuple[float | None, float | None]] = {
    "resolution": (32, 4096),
    "epochs": (1, 10_000),
    "batch_size": (1, 1024),
    "nominal_batch_size": (1, 1024),
    "learning_rate": (1e-6, 1.0),
    "seed": (0, 2**31 - 1),
    "workers": (0, 64),
    "point_size": (2.0, 512.0),
}
_PT_NAME = re.compile(r"[\w.-]{1,128}\.pt")  # a plain file name: no folders, no way out of the weights folder


class UltralyticsSettings(BaseSettings):
    """The plug-in's own settings, from the trainer's environment."""

    model_config = SettingsConfigDict(populate_by_name=True, extra="ignore", frozen=True)

    weights_dir: Path | None = Field(
        None,
        alias="TRAINER_ULTRALYTICS_WEIGHTS_DIR",
        description="Folder of Ultralytics .pt files the `model` hyperparameter may name (trusted: they are pickles).",
    )
    device: str = Field(
        "", alias="TRAINER_ULTRALYTICS_DEVICE", description="Ultralytics device: '' picks a GPU if any, 'cpu', '0'."
    )


class UltralyticsTrainer(TrainerPlugin):
    """Ultralytics YOLO (``ultralytics-detect``, ``ultralytics-segment``) in the VisionLoop trainer."""

    def __init__(self) -> None:
        try:
            self.settings = UltralyticsSettings()
        except ValidationError as error:
            first = error.errors()[0]
            raise ValueError(f"{first['loc'][0]}: {first['msg']}") from None
        if self.settings.weights_dir is not None and not self.settings.weights_dir.is_dir():
            raise ValueError(f"TRAINER_ULTRALYTICS_WEIGHTS_DIR {self.settings.weights_dir} is not a folder")
        self._loaded: dict[Path, Any] = {}  # model file -> YOLO, kept between detect batches

    # --- what it builds -----------------------------------------------------------------------

    def variants(self) -> Sequence[Variant]:
        supplied = self._supplied_weights()
        return [
            Variant(
                name=DETECT,
                description=(
                    f"Ultralytics {ultralytics.__version__} YOLO detection: boxes, and points learnt as "
                    "point_size boxes; from the base model, else `model` (a yaml built from scratch, or a .pt "
                    "from the trainer's weights folder)."
                ),
                category_types=("box", "point"),
                defaults=DEFAULTS[DETECT],
                base_models=("yolov8n.yaml", *supplied),
                formats=("pytorch", "onnx"),
                ranges=LIMITS,
            ),
            Variant(
                name=SEGMENT,
                description=(
                    f"Ultralytics {ultralytics.__version__} YOLO segmentation: outlines and masks; from the "
                    "base model, else `model` (a -seg yaml built from scratch, or a .pt from the trainer's "
                    "weights folder)."
                ),
                category_types=("segmentation",),
                defaults=DEFAULTS[SEGMENT],
                base_models=("yolov8n-seg.yaml", *supplied),
                formats=("pytorch", "onnx"),
                ranges=LIMITS,
            ),
        ]

    def _supplied_weights(self) -> tuple[str, ...]:
        folder = self.settings.weights_dir
        if folder is None or not folder.is_dir():
            return ()
        return tuple(sorted(p.name for p in folder.glob("*.pt") if p.is_file()))

    def verify(self, variant: str, hyperparameters: Mapping[str, Any]) -> Verification:
        base = super().verify(variant, hyperparameters)
        if not base.corrected:  # unknown variant
            return base
        errors, warnings = list(base.errors), list(base.warnings)
        corrected = dict(base.corrected)
        task = TASKS[self.variant(variant).name]  # type: ignore[union-attr]
        if problem := self._model_problem(str(corrected["model"]), task):
            errors.append(problem)
        if corrected["optimizer"] not in OPTIMIZERS:
            errors.append(f"optimizer {corrected['optimizer']!r} is not one of {', '.join(OPTIMIZERS)}")
        elif corrected["optimizer"] == "auto" and "learning_rate" in hyperparameters:
            warnings.append("optimizer auto picks its own learning rate; learning_rate counts with a named optimizer")
        resolution = corrected["resolution"]
        if not errors and resolution % 32:
            corrected["resolution"] = max(32, round(resolution / 32) * 32)
            fixed = corrected["resolution"]
            warnings.append(f"resolution {resolution} is not a multiple of 32 (YOLO's stride); using {fixed}")
        return Verification(tuple(errors), tuple(warnings), corrected)

    def _model_problem(self, name: str, task: str) -> str | None:
        """Why ``model`` cannot start a ``task`` training (None when it can)."""
        if name.endswith(".pt"):
            folder = self.settings.weights_dir
            if folder is None:
                return f"model {name!r} is a .pt file, and TRAINER_ULTRALYTICS_WEIGHTS_DIR is not set on this trainer"
            if not _PT_NAME.fullmatch(name) or not (folder / name).is_file():
                found = ", ".join(self._supplied_weights()) or "none"
                return f"model {name!r} is not a file in this trainer's weights folder (it holds: {found})"
            return None
        unknown = f"model {name!r} is neither an architecture yaml Ultralytics ships (yolov8n.yaml, ...) nor a .pt"
        if not name.endswith((".yaml", ".yml")) or "/" in name or "\\" in name:
            return unknown
        try:
            found = guess_model_task(yaml_model_load(name))  # finds yolov8n.yaml as yolov8.yaml at scale n
        except (FileNotFoundError, SyntaxError, ValueError, KeyError):
            return unknown
        if found != task:
            return f"model {name!r} builds a {found} model; this variant trains {task} models"
        return None

    # --- training -------------------------------------------------------------------------------

    def train(self, job: TrainJob, report: Callable[[Progress], None], cancelled: Callable[[], bool]) -> None:
        job.folder.mkdir(parents=True, exist_ok=True)
        paths = run.Paths(job.folder)
        if paths.finished.is_file():
            return
        task = TASKS[job.variant]
        values = job.hyperparameters
        data = dataset.write(
            job.folder / "dataset",
            job.train_images,
            job.test_images,
            job.categories,
            task,
            float(values.get("point_size", 0.0)),
        )
        run.train(paths, self._start(job, task), self._arguments(job, data), report, cancelled, "metrics/mAP50(B)")

    def _start(self, job: TrainJob, task: str) -> str:
        """What the training starts from: the base model, else the ``model`` hyperparameter."""
        if job.base_model is not None:
            doc = json.loads((job.base_model / MODEL_JSON).read_text())
            if doc.get("variant") != job.variant:
                raise CannotTrain(
                    f"the base model is a {doc.get('variant') or 'model of unknown variant'}; {job.variant} "
                    f"continues only from {job.variant} models: train without a base model to start from "
                    f"`model` ({job.hyperparameters['model']})"
                )
            try:
                return str(weights.ultralytics_checkpoint(job.base_model, job.folder / START))
            except weights.NotOurs as error:
                raise CannotTrain(f"the base model cannot be trained on: {error}") from None
        name = str(job.hyperparameters["model"])
        if problem := self._model_problem(name, task):
            raise CannotTrain(problem)
        if name.endswith(".pt"):
            assert self.settings.weights_dir is not None  # checked by _model_problem
            return str(self.settings.weights_dir / name)
        return name

    def _arguments(self, job: TrainJob, data: Path) -> dict[str, Any]:
        values = job.hyperparameters
        arguments = {
            "data": str(data),
            "task": TASKS[job.variant],
            "epochs": int(values["epochs"]),
            "imgsz": int(values["resolution"]),
            "batch": int(values["batch_size"]),
            "nbs": int(values["nominal_batch_size"]),
            "optimizer": str(values["optimizer"]),
            "lr0": float(values["learning_rate"]),
            "fliplr": 0.5 if values["flip_rl"] else 0.0,
            "flipud": 0.5 if values["flip_ud"] else 0.0,
            "mosaic": 1.0 if values["mosaic"] else 0.0,
            "seed": int(values["seed"]),
            "workers": int(values["workers"]),
            "device": self.settings.device or None,
            "plots": False,  # plots fetch a font
            "val": True,  # best.pt is the epoch that scores best on the held-out images
            "verbose": False,
        }
        return arguments

    def has_model(self, job: TrainJob) -> bool:
        return run.Paths(job.folder).best.is_file()

    # --- export and detection -----------------------------------------------------------------

    def export(self, job: TrainJob, fmt: str, folder: Path) -> None:
        onnx, doc = self._onnx(job)
        if fmt == "onnx":
            shutil.copyfile(onnx, folder / ONNX)
            (folder / MODEL_JSON).write_text(json.dumps({**doc, "format": "onnx"}, indent=2))
        elif fmt == "pytorch":
            weights.write_pytorch(run.Paths(job.folder).best, folder, doc)
        else:
            raise ValueError(f"the Ultralytics trainer writes pytorch and onnx, not {fmt!r}")

    def _onnx(self, job: TrainJob) -> tuple[Path, dict[str, Any]]:
        """The best model exported by Ultralytics (dynamic ONNX, made once) and its model.json."""
        target = job.folder / EXPORT
        if not (target / MODEL_JSON).is_file():
            staging = job.folder / f"{EXPORT}.partial"
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir()
            source = staging / "best.pt"  # the exporter writes beside the weights
            shutil.copyfile(run.Paths(job.folder).best, source)
            exported = YOLO(str(source)).export(
                format="onnx",
                dynamic=True,
                imgsz=int(job.hyperparameters["resolution"]),
                simplify=importlib.util.find_spec("onnxslim") is not None,
                device="cpu",
                verbose=False,
            )
            Path(exported).replace(staging / ONNX)
            source.unlink()
            doc = _model_json(staging / ONNX, job)
            (staging / MODEL_JSON).write_text(json.dumps(doc, indent=2))
            shutil.rmtree(target, ignore_errors=True)
            staging.rename(target)
        return target / ONNX, json.loads((target / MODEL_JSON).read_text())

    def detect(self, job: TrainJob, images: Sequence[np.ndarray]) -> list[detection_pb2.Detections]:
        outputs = [Output(c.id, c.name, c.type) for c in job.categories]
        model = self._model(run.Paths(job.folder).best)
        return detections(model, images, outputs, int(job.hyperparameters["resolution"]), self._device)

    def detect_base(self, job: TrainJob, images: Sequence[np.ndarray]) -> list[detection_pb2.Detections] | None:
        if job.base_model is None:
            return None
        doc = json.loads((job.base_model / MODEL_JSON).read_text())
        if doc.get("variant") != job.variant:
            return None
        checkpoint = weights.ultralytics_checkpoint(job.base_model, job.folder / START)
        # The base model's own outputs: it may predate categories the project added since.
        outputs = [Output(str(c.get("id", "")), str(c["name"]), _type_name(c.get("type"))) for c in doc["categories"]]
        size = int(doc.get("resolution") or job.hyperparameters["resolution"])
        return detections(self._model(checkpoint), images, outputs, size, self._device)

    @property
    def _device(self) -> str | None:
        return self.settings.device or None

    def _model(self, path: Path) -> Any:
        if path not in self._loaded:
            self._loaded[path] = YOLO(str(path))
        return self._loaded[path]

    def close(self) -> None:
        self._loaded.clear()


def _model_json(onnx: Path, job: TrainJob) -> dict[str, Any]:
    """model.json of the export, as ``visionloop models import`` writes it, with the project's category
    ids and types (a point category's boxes are answered as points)."""
    info = model_import.model_info(onnx, {c.name: c.id for c in job.categories})
    types = {c.name: c.type for c in job.categories}
    for category in info.categories:
        if types.get(category.name) == "point":
            category.type = category_pb2.CATEGORY_TYPE_POINT
    info.ClearField("comment")
    return info_to_json(info)


def _type_name(value: Any) -> str:
    """A model.json category type ("box", or an enum name or number) as a plug-in type name."""
    if isinstance(value, int):
        names: dict[int, str] = {
            category_pb2.CATEGORY_TYPE_POINT: "point",
            category_pb2.CATEGORY_TYPE_SEGMENTATION: "segmentation",
        }
        return names.get(value, "box")
    text = str(value or "box").lower().removeprefix("category_type_")
    return text if text in ("box", "point", "segmentation") else "box"
