"""Settings are validated at start-up; a bad one stops the process with one line naming it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.harness import VISIONLOOP, base_env
from visionloop.detector.config import DetectorSettings
from visionloop.loop.config import LoopSettings
from visionloop.runtime.config import ConfigError, load_settings
from visionloop.trainer.config import TrainerSettings


@pytest.mark.parametrize(
    ("service", "env", "named"),
    [
        ("detector", {"MIN_UNCERTAIN_THRESHOLD": "abc"}, "MIN_UNCERTAIN_THRESHOLD"),
        ("loop", {"DATABASE_URL": "mysql://db/visionloop"}, "DATABASE_URL"),
        ("trainer", {"VISIONLOOP_AUTH_TOKENS": "robot:plain-secret-token"}, "VISIONLOOP_AUTH_TOKENS"),
        ("detector", {"DETECTOR_BACKEND": "triton"}, "TRITON_URL"),
    ],
)
def test_invalid_setting_exits_with_one_line(service: str, env: dict[str, str], named: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [VISIONLOOP, "serve", service, "--port", "0"],
        env=base_env(tmp_path, env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert named in lines[0]
    assert "plain-secret-token" not in result.stderr + result.stdout
    assert result.stdout == ""  # nothing started


@pytest.mark.parametrize(
    ("cls", "env", "named"),
    [
        (DetectorSettings, {"MAX_UNCERTAIN_THRESHOLD": "1.5"}, "MAX_UNCERTAIN_THRESHOLD"),
        (
            DetectorSettings,
            {"MIN_UNCERTAIN_THRESHOLD": "0.8", "MAX_UNCERTAIN_THRESHOLD": "0.5"},
            "MIN_UNCERTAIN_THRESHOLD",
        ),
        (DetectorSettings, {"DETECTOR_BACKEND": "triton"}, "TRITON_URL"),
        (DetectorSettings, {"DETECTOR_BACKEND": "tensorflow"}, "DETECTOR_BACKEND"),
        (DetectorSettings, {"DETECTOR_QUEUE_BUDGET_MS": "0"}, "DETECTOR_QUEUE_BUDGET_MS"),
        (DetectorSettings, {"DETECTOR_QUEUE_BUDGET_MS": "1"}, "DETECTOR_MAX_BATCH_WAIT_MS"),
        (DetectorSettings, {"DETECTOR_MAX_QUEUED_BATCHES": "0"}, "DETECTOR_MAX_QUEUED_BATCHES"),
        (DetectorSettings, {"LOOP_HOST": "no-port"}, "LOOP_HOST"),
        (DetectorSettings, {"LOOP_ORGANIZATION": "Bad Org!"}, "LOOP_ORGANIZATION"),
        (DetectorSettings, {"LOOP_SSL_CERT_PATH": "/nonexistent/ca.pem"}, "LOOP_SSL_CERT_PATH"),
        (TrainerSettings, {"INFERENCE_BATCH_SIZE": "0"}, "INFERENCE_BATCH_SIZE"),
        (TrainerSettings, {"KEEP_OLD_TRAININGS": "maybe"}, "KEEP_OLD_TRAININGS"),
        (LoopSettings, {"S3_ENDPOINT": "http://minio:9000"}, "S3_BUCKET"),
        (LoopSettings, {"VISIONLOOP_PORT": "70000"}, "VISIONLOOP_PORT"),
        (LoopSettings, {"VISIONLOOP_LOG_LEVEL": "chatty"}, "VISIONLOOP_LOG_LEVEL"),
        (LoopSettings, {"VISIONLOOP_TLS_CERT": "/nonexistent.pem"}, "VISIONLOOP_TLS_CERT"),
        (LoopSettings, {"VISIONLOOP_AUTH_TOKENS": "superuser=abc"}, "VISIONLOOP_AUTH_TOKENS"),
    ],
)
def test_validation_names_the_setting(
    cls: type, env: dict[str, str], named: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError) as caught:
        load_settings(cls)
    message = str(caught.value)
    assert named in message
    assert "\n" not in message


def test_valid_environment_and_flag_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MIN_UNCERTAIN_THRESHOLD", "0.2")
    monkeypatch.setenv("VISIONLOOP_PORT", "6000")
    monkeypatch.setenv("VISIONLOOP_AUTH_TOKENS", "robot=r1, admin=a1,robot=r2")
    settings = load_settings(DetectorSettings, port=7000, data_dir=tmp_path)
    assert settings.min_uncertain_threshold == 0.2
    assert settings.port == 7000  # the flag wins over the environment
    assert settings.data_dir == tmp_path
    assert settings.tokens() == {"r1": "robot", "a1": "admin", "r2": "robot"}
    assert "r1" not in repr(settings)
