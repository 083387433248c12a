"""Server TLS and mutual TLS credentials from the service settings, and the checks behind them.

gRPC reports any problem with a certificate or key as "Failed to bind" (or a handshake failure
later, on a client). The settings check the files first with ``cryptography``, so a bad file
stops the process at start-up with one line that names it and what is wrong: unreadable, not
PEM, an encrypted key, a key that does not belong to the certificate, a certificate out of date.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

if TYPE_CHECKING:
    from visionloop.runtime.config import ServiceSettings

_SPKI = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise ValueError(f"cannot read {path}: {error.strerror or error}") from None


def load_certificates(path: Path) -> list[x509.Certificate]:
    """The PEM certificates in ``path`` (a chain: the leaf first); ValueError saying what is wrong."""
    data = _read(path)
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError:
        if b"-----BEGIN" not in data:
            raise ValueError(
                f"{path} is not PEM (no '-----BEGIN CERTIFICATE-----'); a DER file converts with "
                "'openssl x509 -inform der -in FILE -out FILE.pem'"
            ) from None
        raise ValueError(f"{path} holds no readable PEM certificate") from None
    return certificates


def check_in_date(certificate: x509.Certificate, path: Path, now: datetime.datetime | None = None) -> None:
    now = now or datetime.datetime.now(datetime.UTC)
    if certificate.not_valid_after_utc < now:
        raise ValueError(f"the certificate in {path} expired on {certificate.not_valid_after_utc:%Y-%m-%d %H:%M} UTC")
    if certificate.not_valid_before_utc > now:
        raise ValueError(
            f"the certificate in {path} is not valid before {certificate.not_valid_before_utc:%Y-%m-%d %H:%M} UTC"
        )


def load_private_key(path: Path) -> PrivateKeyTypes:
    """The unencrypted PEM private key in ``path``; ValueError saying what is wrong."""
    data = _read(path)
    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError:  # cryptography's way of saying the key needs a password
        raise ValueError(
            f"{path} is an encrypted private key; gRPC needs it unencrypted (openssl pkey -in FILE -out FILE.plain)"
        ) from None
    except UnsupportedAlgorithm:
        raise ValueError(f"{path} holds a private key of a type TLS here does not support") from None
    except ValueError:
        if b"-----BEGIN CERTIFICATE-----" in data and b"PRIVATE KEY-----" not in data:
            raise ValueError(f"{path} holds a certificate, not a private key") from None
        raise ValueError(f"{path} holds no readable PEM private key ('-----BEGIN PRIVATE KEY-----')") from None


def check_key_pair(certificate_path: Path, key_path: Path, certificate_setting: str, key_setting: str) -> None:
    """ValueError unless the key in ``key_path`` belongs to the first certificate in ``certificate_path``
    and that certificate is in date. The message names both settings."""
    certificate = load_certificates(certificate_path)[0]
    key = load_private_key(key_path)
    if certificate.public_key().public_bytes(*_SPKI) != key.public_key().public_bytes(*_SPKI):
        raise ValueError(
            f"{key_setting} ({key_path}) does not match the certificate in {certificate_setting} ({certificate_path}): "
            "the key belongs to another certificate"
        )
    try:
        check_in_date(certificate, certificate_path)
    except ValueError as error:
        raise ValueError(f"{certificate_setting}: {error}") from None


def server_credentials(settings: ServiceSettings) -> grpc.ServerCredentials | None:
    """TLS credentials, requiring client certificates when a client CA is set; None for plaintext."""
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    client_ca = settings.tls_client_ca.read_bytes() if settings.tls_client_ca else None
    return grpc.ssl_server_credentials(
        [(settings.tls_key.read_bytes(), settings.tls_cert.read_bytes())],
        root_certificates=client_ca,
        require_client_auth=client_ca is not None,
    )
