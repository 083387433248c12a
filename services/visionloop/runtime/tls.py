"""Server TLS and mutual TLS credentials from the service settings."""

from __future__ import annotations

import grpc

from visionloop.runtime.config import ServiceSettings


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
