"""TLS and mutual TLS with certificates made by the test."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from tests.certs import make_pki
from tests.harness import serve
from visionloop.client import DetectorClient


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
