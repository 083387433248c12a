"""One conversion from an unpacked source model to a checked target model folder (blocking).

A ``pytorch`` source is first exported to ONNX (by its variant's exporter), so every target can
start from either source format the hub hands out. The parity check compares the final model
with the source itself (PyTorch or ONNX) and refuses to return a model outside tolerance.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from visionloop.common.v1 import model_pb2
from visionloop.converter.v1 import converter_service_pb2 as pb
from visionloop.lib.model_format import onnx_graph
from visionloop.lib.model_format import triton as triton_entries
from visionloop.lib.model_format.model_json import write_model_json
from visionloop.server.converter import exporters, onnx_models, parity
from visionloop.server.converter.artifacts import ModelFolder, read_folder
from visionloop.server.converter.config import Int8Mode
from visionloop.server.converter.errors import ConversionFailed
from visionloop.server.converter.samples import Samples, calibration_tensors, parity_inputs, prepare_all

SOURCES = ("onnx", "pytorch")
FP32_TARGETS = ("onnx", triton_entries.PYTHON, triton_entries.ONNX)
REDUCED_TARGETS = ("onnx_fp16", "onnx_int8")
TARGETS = (*FP32_TARGETS, *REDUCED_TARGETS)
WEIGHTS = "model.onnx"


@dataclass(frozen=True)
class Options:
    """Everything a conversion may be tuned with (settings, overridden per Convert call)."""

    opset: int = 17
    fp32_max_abs_diff: float = 1e-4
    fp16_max_map_drop: float = 0.01
    int8_max_map_drop: float = 0.03
    int8_mode: Int8Mode = Int8Mode.DYNAMIC
    parity_samples: int = 4
    skip_parity: bool = False
    entry: triton_entries.EntryOptions = field(default_factory=triton_entries.EntryOptions)


@dataclass(frozen=True)
class Job:
    """A conversion to run: the source, what to make and where the Triton repository is."""

    source: ModelFolder
    source_format: str
    target: str
    organization: str
    project: str
    version: str
    workdir: Path
    options: Options = field(default_factory=Options)
    samples: Samples = field(default_factory=Samples)
    repository_location: str = ""  # written into Triton formats' model.json


@dataclass(frozen=True)
class Result:
    folder: Path  # the target artifact: model.json plus its files, ready to zip
    parity: pb.ParityReport
    note: str = ""  # a remark on a pass, e.g. that no validation images were there
    triton_name: str = ""  # Triton formats: the repository entry to publish
    triton_files: dict[str, Path | bytes] | None = None


def paths() -> list[tuple[str, str]]:
    """(source, target) pairs this converter handles."""
    pairs = [("pytorch", "onnx")]
    pairs += [(source, target) for target in TARGETS if target != "onnx" for source in SOURCES]
    return pairs


def check_path(source_format: str, target: str) -> None:
    if (source_format, target) not in paths():
        known = ", ".join(f"{s} -> {t}" for s, t in paths())
        raise ConversionFailed(f"cannot convert {source_format} to {target}; known: {known}", permanent=True)


def _onnx_source(job: Job) -> tuple[Path, exporters.Runner]:
    """The source as an ONNX file (exported first for PyTorch) and the source runner parity compares with."""
    info = job.source.info
    names = list(info.output.tensor_names)
    if job.source_format == "onnx":
        weights = job.source.path / WEIGHTS
        if not weights.is_file():
            candidates = sorted(job.source.path.glob("*.onnx"))
            if not candidates:
                raise ConversionFailed("the onnx model has no .onnx file", permanent=True)
            weights = candidates[0]
        return weights, onnx_models.onnx_runner(weights, names)
    reference = exporters.load_source(info.variant, job.source.path)  # a broken model fails here, plainly
    folder = job.workdir / "exported"
    exporters.export(info.variant, job.source.path, folder)
    weights = folder / WEIGHTS
    onnx_models.convert_opset(weights, job.options.opset)
    onnx_models.check_dynamic_batch(weights)
    return weights, reference


def _target_doc(job: Job, extra: dict[str, object] | None = None) -> dict[str, object]:
    doc: dict[str, object] = {**job.source.doc, "format": job.target}
    if extra:
        doc.update(extra)
    return doc


def _fp16(job: Job, weights: Path, target: Path) -> None:
    onnx_models.to_fp16(weights, target)


def _int8(job: Job, weights: Path, target: Path) -> None:
    if job.options.int8_mode is Int8Mode.STATIC:
        tensors = calibration_tensors(job.samples.calibration, job.source.info.input, job.samples.limits)
        onnx_models.to_int8_static(weights, target, tensors)
    else:
        onnx_models.to_int8_dynamic(weights, target)


def _copy(job: Job, weights: Path, target: Path) -> None:
    shutil.copyfile(weights, target)


# How each target's ONNX file comes from the source's; Triton entries hold the FP32 model as is.
BUILDERS: dict[str, Callable[[Job, Path, Path], None]] = {
    "onnx": _copy,
    "onnx_fp16": _fp16,
    "onnx_int8": _int8,
    triton_entries.PYTHON: _copy,
    triton_entries.ONNX: _copy,
}


def _check(job: Job, reference: exporters.Runner, converted: Path) -> parity.Verdict:
    info = model_pb2.ModelInfo()
    info.CopyFrom(job.source.info)
    if info.input.width <= 0 or info.input.height <= 0:
        raise ConversionFailed("model.json input.width and input.height must be set to check parity", permanent=True)
    # The graph decides the batch (a static export takes exactly its batch size); a graph of any size
    # is checked on inputs of the full width x height, so the samples stack into one batch.
    info.input.batch_size = onnx_graph.batch_size(info.input, onnx_graph.read_signature(converted))
    info.input.stride = 0
    runner = onnx_models.onnx_runner(converted, list(info.output.tensor_names))
    validation = prepare_all(job.samples.validation, info.input, job.samples.limits)
    inputs: np.ndarray = parity_inputs(validation, info.input, job.options.parity_samples)
    if job.target in FP32_TARGETS:
        return parity.check_exact(reference, runner, inputs, job.options.fp32_max_abs_diff, info.input.batch_size)
    drop = job.options.fp16_max_map_drop if job.target == "onnx_fp16" else job.options.int8_max_map_drop
    return parity.check_map(reference, runner, inputs, info, validation, drop)


def _triton(job: Job, weights: Path, out: Path) -> tuple[str, dict[str, Path | bytes]]:
    """Lay the entry out in ``out`` (beside model.json: the zip the hub keeps); returns its name and files."""
    name = triton_entries.entry_name(job.organization, job.project, job.version, job.target)
    inputs, outputs = onnx_models.tensors(weights)
    if inputs and inputs[0].shape and inputs[0].shape[0] != -1:
        raise ConversionFailed(
            f"input {inputs[0].name!r} has a fixed batch size {inputs[0].shape[0]}: Triton entries batch, so they "
            "need a dynamic batch axis (export with dynamic=True); the detector serves the onnx format as it is",
            permanent=True,
        )
    specs_in = [triton_entries.TensorSpec(t.name, t.shape[1:], t.triton_type) for t in inputs[:1]]
    specs_out = [triton_entries.TensorSpec(t.name, t.shape[1:], t.triton_type) for t in outputs]
    files = triton_entries.entry_files(job.target, name, weights, specs_in, specs_out, job.options.entry)
    triton_entries.write_entry(out, files)
    return name, {relative: out / relative for relative in files}


def convert(job: Job) -> Result:
    """Run ``job``; ConversionFailed with a readable reason (and the parity report, if it was refused)."""
    check_path(job.source_format, job.target)
    weights, reference = _onnx_source(job)
    built = job.workdir / "built.onnx"
    BUILDERS[job.target](job, weights, built)
    if job.options.skip_parity:
        verdict = parity.Verdict(pb.ParityReport(passed=True), "parity check skipped on request")
    else:
        verdict = _check(job, reference, built)
        if not verdict.report.passed:
            raise ConversionFailed(verdict.reason, parity=verdict.report)
    out = job.workdir / "target"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    name, files = "", None
    extra: dict[str, object] | None = None
    if job.target in (triton_entries.PYTHON, triton_entries.ONNX):
        name, files = _triton(job, built, out)
        extra = {"triton": {"model_name": name, "repository": job.repository_location}}
    else:
        shutil.move(built, out / WEIGHTS)
    write_model_json(out, _target_doc(job, extra))
    read_folder(out)  # what goes out must read back as a model
    return Result(out, verdict.report, verdict.reason, name, files)
