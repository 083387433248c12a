"""Settings are validated at start-up; a bad one stops the process with one line naming it."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest

from tests.harness import VISIONLOOP, base_env
from visionloop.runtime.access import Scope
from visionloop.runtime.config import ConfigError, load_settings
from visionloop.server.detector.config import DetectorSettings
from visionloop.server.hub.config import LoopSettings
from visionloop.server.trainer.config import TrainerSettings


@pytest.mark.parametrize(
    ("service", "env", "named"),
    [
        ("detector", {"MIN_UNCERTAIN_THRESHOLD": "abc"}, "MIN_UNCERTAIN_THRESHOLD"),
        ("loop", {"DATABASE_URL": "mysql://db/visionloop"}, "DATABASE_URL"),
        ("trainer", {"VISIONLOOP_AUTH_TOKENS": "robot:plain-secret-token"}, "VISIONLOOP_AUTH_TOKENS"),
        ("detector", {"DETECTOR_BACKEND": "triton"}, "TRITON_URL"),
        ("loop", {"VISIONLOOP_MAX_IMAGE_BYTES": "-1"}, "VISIONLOOP_MAX_IMAGE_BYTES"),
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
        (DetectorSettings, {"DETECTOR_QUEUE_TARGET_MS": "0"}, "DETECTOR_QUEUE_TARGET_MS"),
        (DetectorSettings, {"DETECTOR_QUEUE_TARGET_MS": "1"}, "DETECTOR_MAX_BATCH_WAIT_MS"),
        (DetectorSettings, {"DETECTOR_QUEUE_INTERVAL_MS": "0"}, "DETECTOR_QUEUE_INTERVAL_MS"),
        (DetectorSettings, {"LOOP_HOST": "no-port"}, "LOOP_HOST"),
        (DetectorSettings, {"LOOP_ORGANIZATION": "Bad Org!"}, "LOOP_ORGANIZATION"),
        (DetectorSettings, {"LOOP_SSL_CERT_PATH": "/nonexistent/ca.pem"}, "LOOP_SSL_CERT_PATH"),
        (TrainerSettings, {"INFERENCE_BATCH_SIZE": "0"}, "INFERENCE_BATCH_SIZE"),
        (TrainerSettings, {"KEEP_OLD_TRAININGS": "maybe"}, "KEEP_OLD_TRAININGS"),
        (LoopSettings, {"S3_ENDPOINT": "http://minio:9000"}, "S3_BUCKET"),
        (LoopSettings, {"VISIONLOOP_PORT": "70000"}, "VISIONLOOP_PORT"),
        (LoopSettings, {"VISIONLOOP_LOG_LEVEL": "chatty"}, "VISIONLOOP_LOG_LEVEL"),
        (LoopSettings, {"VISIONLOOP_MAX_IMAGE_PIXELS": "0"}, "VISIONLOOP_MAX_IMAGE_PIXELS"),
        (TrainerSettings, {"VISIONLOOP_MAX_IMAGE_BYTES": "a lot"}, "VISIONLOOP_MAX_IMAGE_BYTES"),
        (LoopSettings, {"VISIONLOOP_TLS_CERT": "/nonexistent.pem"}, "VISIONLOOP_TLS_CERT"),
        (LoopSettings, {"VISIONLOOP_AUTH_TOKENS": "superuser=abc"}, "VISIONLOOP_AUTH_TOKENS"),
        (DetectorSettings, {"VISIONLOOP_GRPC_MAX_CONNECTION_AGE_SECONDS": "0.5"}, "AGE_SECONDS must be 0"),
        (DetectorSettings, {"VISIONLOOP_GRPC_MAX_CONNECTION_AGE_SECONDS": "-1"}, "_MAX_CONNECTION_AGE_SECONDS"),
        (
            DetectorSettings,
            {"VISIONLOOP_GRPC_MAX_CONNECTION_AGE_GRACE_SECONDS": "30"},
            "VISIONLOOP_GRPC_MAX_CONNECTION_AGE_GRACE_SECONDS needs VISIONLOOP_GRPC_MAX_CONNECTION_AGE_SECONDS",
        ),
        (LoopSettings, {"VISIONLOOP_GRPC_KEEPALIVE_SECONDS": "1"}, "VISIONLOOP_GRPC_KEEPALIVE_SECONDS"),
        (
            LoopSettings,
            {"VISIONLOOP_GRPC_KEEPALIVE_SECONDS": "30", "VISIONLOOP_GRPC_KEEPALIVE_TIMEOUT_SECONDS": "30"},
            "VISIONLOOP_GRPC_KEEPALIVE_TIMEOUT_SECONDS must be shorter",
        ),
        (LoopSettings, {"VISIONLOOP_HEALTH_PORT": "50051", "VISIONLOOP_PORT": "50051"}, "VISIONLOOP_HEALTH_PORT"),
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
    tokens = settings.tokens()
    assert [grant.role for grant in tokens.grants_of("r1")] == ["robot"]
    assert [grant.role for grant in tokens.grants_of("a1")] == ["admin"]
    assert tokens.grants_of("r3") == []
    assert "r1" not in repr(settings)


def test_token_entries_take_digests_and_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    digest = hashlib.sha256(b"det-secret").hexdigest()
    monkeypatch.setenv(
        "VISIONLOOP_AUTH_TOKENS",
        f"detector_node@acme/weeds=sha256:{digest},operator@acme=op-secret,robot=op-secret",
    )
    tokens = load_settings(DetectorSettings).tokens()
    (detector,) = tokens.grants_of("det-secret")  # known by its digest only
    assert (detector.role, detector.scope) == ("detector_node", Scope("acme", "weeds"))
    assert tokens.grants_of(f"sha256:{digest}") == []  # the digest itself is no token
    # One token in two entries holds both grants.
    assert {(g.role, g.scope) for g in tokens.grants_of("op-secret")} == {
        ("operator", Scope("acme")),
        ("robot", None),
    }


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("robot=top-secret,superuser=top-secret", "entry 2: unknown role 'superuser'"),
        ("robot:top-secret", "entry 1 is not role=token"),
        ("robot@Acme=top-secret", "entry 1 is not role=token"),
        ("robot@acme/weeds/x=top-secret", "entry 1 is not role=token"),
        ("robot=sha256:top-secret", "entry 1: a digest is sha256: and 64 lower-case hex digits"),
    ],
)
def test_bad_token_entries_are_named_without_their_secret(
    value: str, reason: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VISIONLOOP_AUTH_TOKENS", value)
    with pytest.raises(ConfigError) as caught:
        load_settings(LoopSettings)
    assert str(caught.value).startswith(f"configuration error: VISIONLOOP_AUTH_TOKENS: {reason}")
    assert "top-secret" not in str(caught.value)
