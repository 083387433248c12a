"""The ``--model-repository`` path Triton takes for an S3 prefix, as Triton's S3 file system parses it.

Triton reads two spellings: ``s3://bucket/prefix`` goes to AWS (the region from Triton's
``AWS_DEFAULT_REGION``), and ``s3://[https://]host:port/bucket/prefix`` goes to that endpoint,
path-style, over http unless ``https://`` is written. Anything else is not refused at start-up:
it is read as an AWS bucket named after the host, so Triton waits on AWS and never loads a model.
Hence the port is always written, and what Triton's syntax cannot hold is refused here: host
names of letters, digits, dots and hyphens (no IPv6 literals), bucket names of lower-case
letters, digits, dots and hyphens, prefix segments of letters, digits, dots, hyphens and
underscores, an endpoint without a path.
"""

from __future__ import annotations

import re
from urllib.parse import urlparse

_HOST = re.compile(r"[0-9A-Za-z.-]+")
_BUCKET = re.compile(r"[0-9a-z.-]+")
_SEGMENT = re.compile(r"[0-9A-Za-z._-]+")
_AWS_DOMAINS = ("amazonaws.com", "amazonaws.com.cn")


def is_aws(host: str) -> bool:
    return any(host == domain or host.endswith(f".{domain}") for domain in _AWS_DOMAINS)


def triton_s3_url(endpoint: str, bucket: str, prefix: str) -> str:
    """The repository path Triton takes for ``prefix`` in ``bucket`` at ``endpoint``; ValueError
    naming the part Triton's syntax cannot hold."""
    parsed = urlparse(endpoint)
    host = parsed.hostname or ""
    if parsed.scheme not in ("http", "https") or not host:
        raise ValueError(f"S3 endpoint {endpoint!r} is not an http:// or https:// URL")
    if parsed.path.strip("/"):
        raise ValueError(f"S3 endpoint {endpoint!r} has a path, which Triton's S3 repository path cannot hold")
    if not _BUCKET.fullmatch(bucket):
        raise ValueError(f"bucket {bucket!r}: Triton reads buckets of lower-case letters, digits, dots and hyphens")
    bad = [segment for segment in prefix.split("/") if not _SEGMENT.fullmatch(segment)]
    if bad:
        raise ValueError(
            f"prefix {prefix!r}: Triton reads key segments of letters, digits, dots, hyphens and underscores"
            f" (not {bad[0]!r})"
        )
    if is_aws(host):
        return f"s3://{bucket}/{prefix}"
    if not _HOST.fullmatch(host):
        raise ValueError(
            f"S3 endpoint host {host!r}: Triton reads host names of letters, digits, dots and hyphens"
            " (no IPv6 addresses); give the store a DNS name"
        )
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    scheme = "https://" if parsed.scheme == "https" else ""
    return f"s3://{scheme}{host}:{port}/{bucket}/{prefix}"
