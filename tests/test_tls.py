"""TLS and mutual TLS with certificates made by the test."""

from __future__ import annotations

import datetime
import os
import subprocess
from pathlib import Path

import grpc
import pytest

from tests.harness import VISIONLOOP, base_env, serve
from visionloop.client import DetectorClient
from visionloop.runtime.config import ConfigError, load_settings
from visionloop.server.detector.config import DetectorSettings
from visionloop.testing.certs import der_copy, encrypted_copy, make_pki, self_signed


def _refused(client: DetectorClient) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as caught:
        client.build_info(timeout=3)
    return caught.value.code()


def test_tls(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    env = {"VISIONLOOP_TLS_CERT": str(pki.server_cert), "VISIONLOOP_TLS_KEY": str(pki.server_key)}
    with serve("detector", tmp_path, env=env) as proc:
        assert proc.wait_for("listening")[0]["tls"] == "on"
        target = f"localhost:{proc.ports()['detector']}"
        with DetectorClient(target, root_certificates=pki.ca) as client:
            assert client.build_info().service == "detector"
        with DetectorClient(target) as plaintext:
            assert _refused(plaintext) is grpc.StatusCode.UNAVAILABLE


def test_mutual_tls(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    env = {
        "VISIONLOOP_TLS_CERT": str(pki.server_cert),
        "VISIONLOOP_TLS_KEY": str(pki.server_key),
        "VISIONLOOP_TLS_CLIENT_CA": str(pki.ca),
    }
    with serve("detector", tmp_path, env=env) as proc:
        assert proc.wait_for("listening")[0]["tls"] == "mutual"
        target = f"localhost:{proc.ports()['detector']}"
        with DetectorClient(
            target, root_certificates=pki.ca, certificate_chain=pki.client_cert, private_key=pki.client_key
        ) as client:
            assert client.build_info().service == "detector"
        with DetectorClient(target, root_certificates=pki.ca) as no_client_cert:
            assert _refused(no_client_cert) is grpc.StatusCode.UNAVAILABLE
        with DetectorClient(target) as plaintext:
            assert _refused(plaintext) is grpc.StatusCode.UNAVAILABLE


def test_a_key_that_does_not_match_the_certificate_stops_start_up_with_one_line(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    env = {"VISIONLOOP_TLS_CERT": str(pki.server_cert), "VISIONLOOP_TLS_KEY": str(pki.client_key)}
    result = subprocess.run(
        [VISIONLOOP, "serve", "detector", "--port", "0"],
        env=base_env(tmp_path, env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stdout == ""  # nothing started
    assert result.stderr.strip() == (
        f"visionloop detector: configuration error: VISIONLOOP_TLS_KEY ({pki.client_key}) does not match the "
        f"certificate in VISIONLOOP_TLS_CERT ({pki.server_cert}): the key belongs to another certificate"
    )


def _tls_problem(tmp_path: Path, case: str) -> tuple[dict[str, str], str]:
    """(environment, what the one line must say) for one broken TLS set-up."""
    pki = make_pki(tmp_path / "pki")
    now = datetime.datetime.now(datetime.UTC)
    server = {"VISIONLOOP_TLS_CERT": str(pki.server_cert), "VISIONLOOP_TLS_KEY": str(pki.server_key)}
    garbage = tmp_path / "garbage.pem"
    garbage.write_bytes(b"not a certificate\n")
    if case == "cert not PEM":
        der = der_copy(pki.server_cert, tmp_path / "server.der")
        return {**server, "VISIONLOOP_TLS_CERT": str(der)}, f"VISIONLOOP_TLS_CERT: {der} is not PEM"
    if case == "key not PEM":
        return {**server, "VISIONLOOP_TLS_KEY": str(garbage)}, f"VISIONLOOP_TLS_KEY: {garbage} holds no readable PEM"
    if case == "certificate as key":
        return (
            {**server, "VISIONLOOP_TLS_KEY": str(pki.server_cert)},
            f"VISIONLOOP_TLS_KEY: {pki.server_cert} holds a certificate, not a private key",
        )
    if case == "encrypted key":
        locked = encrypted_copy(pki.server_key, tmp_path / "locked.pem")
        return {**server, "VISIONLOOP_TLS_KEY": str(locked)}, f"VISIONLOOP_TLS_KEY: {locked} is an encrypted"
    if case == "expired":
        cert, key = self_signed(tmp_path / "old", now - datetime.timedelta(days=30), now - datetime.timedelta(days=1))
        return (
            {"VISIONLOOP_TLS_CERT": str(cert), "VISIONLOOP_TLS_KEY": str(key)},
            f"VISIONLOOP_TLS_CERT: the certificate in {cert} expired on",
        )
    if case == "not yet valid":
        cert, key = self_signed(tmp_path / "new", now + datetime.timedelta(days=1), now + datetime.timedelta(days=30))
        return (
            {"VISIONLOOP_TLS_CERT": str(cert), "VISIONLOOP_TLS_KEY": str(key)},
            f"VISIONLOOP_TLS_CERT: the certificate in {cert} is not valid before",
        )
    if case == "client CA not PEM":
        return {**server, "VISIONLOOP_TLS_CLIENT_CA": str(garbage)}, f"VISIONLOOP_TLS_CLIENT_CA: {garbage} is not PEM"
    if case == "unreadable key":
        locked = tmp_path / "unreadable.pem"
        locked.write_bytes(pki.server_key.read_bytes())
        locked.chmod(0)
        return {**server, "VISIONLOOP_TLS_KEY": str(locked)}, f"VISIONLOOP_TLS_KEY: cannot read {locked}: Permission"
    if case == "hub client key mismatch":
        env = {"LOOP_CLIENT_CERT": str(pki.client_cert), "LOOP_CLIENT_KEY": str(pki.server_key)}
        return env, f"LOOP_CLIENT_KEY ({pki.server_key}) does not match the certificate in LOOP_CLIENT_CERT"
    assert case == "hub client cert alone"
    return {"LOOP_CLIENT_CERT": str(pki.client_cert)}, "LOOP_CLIENT_CERT and LOOP_CLIENT_KEY must be set together"


@pytest.mark.parametrize(
    "case",
    [
        "cert not PEM",
        "key not PEM",
        "certificate as key",
        "encrypted key",
        "expired",
        "not yet valid",
        "client CA not PEM",
        "unreadable key",
        "hub client key mismatch",
        "hub client cert alone",
    ],
)
def test_tls_problems_are_named_at_start_up(case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if case == "unreadable key" and os.geteuid() == 0:
        pytest.skip("root reads any file")
    env, expected = _tls_problem(tmp_path, case)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load_settings(DetectorSettings)
    message = str(caught.value)
    assert message.startswith(f"configuration error: {expected}"), message
    assert "\n" not in message
