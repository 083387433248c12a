"""The protobuf contracts: buf lint/format pass, generated code matches, drift is caught."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import descriptor_pool

from tests.harness import REPO

BUF = REPO / "node_modules" / ".bin" / "buf"
GEN = REPO / "scripts" / "gen_protos.py"


def _buf(*args: str) -> subprocess.CompletedProcess[str]:
    if not BUF.exists():
        pytest.fail("buf is not installed: run `npm ci` (the README's set-up command does)")
    return subprocess.run([str(BUF), *args], cwd=REPO, capture_output=True, text=True, timeout=120)


def test_buf_lint_and_format() -> None:
    lint = _buf("lint")
    assert lint.returncode == 0, lint.stdout + lint.stderr
    fmt = _buf("format", "--diff", "--exit-code")
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


def test_buf_lint_catches_an_undocumented_field(tmp_path: Path) -> None:
    shutil.copytree(REPO / "protos", tmp_path / "protos")
    shutil.copy(REPO / "buf.yaml", tmp_path / "buf.yaml")
    proto = tmp_path / "protos" / "visionloop" / "common" / "v1" / "geometry.proto"
    proto.write_text(proto.read_text().replace("  float x = 1;\n", "  float x = 1;\n  float z = 9;\n", 1))
    lint = subprocess.run([str(BUF), "lint"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert lint.returncode != 0
    assert 'Field "z" should have a non-empty comment' in lint.stdout + lint.stderr


def test_generated_code_matches_protos() -> None:
    check = subprocess.run([sys.executable, str(GEN), "--check"], capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stderr


def test_drift_check_fails_on_an_edited_proto(tmp_path: Path) -> None:
    protos = tmp_path / "protos"
    shutil.copytree(REPO / "protos", protos)
    proto = protos / "visionloop" / "detector" / "v1" / "detector_service.proto"
    proto.write_text(
        proto.read_text().replace(
            "  // Model to use by name; empty uses the configured default.\n  string model = 9;\n",
            "  // Model to use by name; empty uses the configured default.\n  string model = 9;\n"
            "  // A field added without regenerating.\n  bool added = 10;\n",
        )
    )
    check = subprocess.run(
        [sys.executable, str(GEN), "--check", "--protos", str(protos)], capture_output=True, text=True, timeout=120
    )
    assert check.returncode == 1
    assert "differs: visionloop/detector/v1/detector_service_pb2.py" in check.stderr


def test_drift_check_fails_on_a_removed_proto(tmp_path: Path) -> None:
    protos = tmp_path / "protos"
    shutil.copytree(REPO / "protos", protos)
    (protos / "visionloop" / "ops" / "v1" / "ops_service.proto").unlink()
    check = subprocess.run(
        [sys.executable, str(GEN), "--check", "--protos", str(protos)], capture_output=True, text=True, timeout=120
    )
    assert check.returncode == 1
    assert "stale: visionloop/ops/v1/ops_service_pb2.py" in check.stderr


def test_every_service_package_is_versioned_and_every_rpc_pairs_request_response() -> None:
    import visionloop.annotator.v1.annotator_service_pb2
    import visionloop.converter.v1.converter_service_pb2
    import visionloop.detector.v1.detector_service_pb2
    import visionloop.loop.v1.event_service_pb2
    import visionloop.trainer.v1.trainer_service_pb2  # noqa: F401

    pool = descriptor_pool.Default()
    for name in (
        "visionloop.detector.v1.DetectorService",
        "visionloop.trainer.v1.TrainerService",
        "visionloop.converter.v1.ConverterService",
        "visionloop.annotator.v1.AnnotatorService",
        "visionloop.loop.v1.EventService",
    ):
        service = pool.FindServiceByName(name)
        for method in service.methods:
            assert method.input_type.name == f"{method.name}Request"
            assert method.output_type.name == f"{method.name}Response"


def test_training_states_follow_the_trainer_state_machine() -> None:
    from visionloop.common.v1 import training_pb2

    names = [v.name.removeprefix("TRAINING_STATE_") for v in training_pb2.TrainingState.DESCRIPTOR.values][1:]
    assert names == [
        "INITIALIZED",
        "DATA_DOWNLOADING",
        "DATA_DOWNLOADED",
        "TRAIN_MODEL_DOWNLOADING",
        "TRAIN_MODEL_DOWNLOADED",
        "TRAINING_RUNNING",
        "TRAINING_FINISHED",
        "CONFUSION_MATRIX_SYNCING",
        "CONFUSION_MATRIX_SYNCED",
        "TRAIN_MODEL_UPLOADING",
        "TRAIN_MODEL_UPLOADED",
        "DETECTING",
        "DETECTED",
        "DETECTION_UPLOADING",
        "READY_FOR_CLEANUP",
    ]
