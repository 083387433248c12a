"""Shared fixtures: the CLI must be installed (the README's test command does that); the real
storage servers, started once per test session for every test that needs them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.harness import VISIONLOOP
from visionloop.testing.servers import S3UnderTest, postgres_server, s3_under_test


@pytest.fixture(scope="session", autouse=True)
def _cli_installed() -> None:
    import shutil

    if shutil.which(VISIONLOOP) is None:
        pytest.fail("the visionloop CLI is not installed; run the README's set-up command first")


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL server for the session; tests create a database each."""
    with postgres_server() as url:
        yield url


@pytest.fixture(scope="session")
def s3_under_test_server() -> Iterator[S3UnderTest]:
    """The session's S3 server: radosgw (moto with VISIONLOOP_TEST_S3=moto)."""
    with s3_under_test() as server:
        yield server


@pytest.fixture(scope="session")
def s3_settings(s3_under_test_server: S3UnderTest) -> dict[str, str]:
    """The session's S3 server as the hub's S3 settings; tests use a bucket each."""
    return s3_under_test_server.settings
