"""Shared fixtures: the CLI must be installed (the README's test command does that)."""

from __future__ import annotations

import pytest

from tests.harness import VISIONLOOP


@pytest.fixture(scope="session", autouse=True)
def _cli_installed() -> None:
    import shutil

    if shutil.which(VISIONLOOP) is None:
        pytest.fail("the visionloop CLI is not installed; run the README's set-up command first")
