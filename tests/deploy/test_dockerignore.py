"""The images' build context: .dockerignore keeps what the Dockerfiles COPY and nothing else (a
bootstrapped checkout holds gigabytes of virtual environment, node_modules and git history)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from docker.utils.build import exclude_paths

from tests.deploy.conftest import DEPLOY, REPO

DOCKERFILES = sorted((DEPLOY / "docker").glob("Dockerfile*"))


def context(dockerfile: Path) -> set[str]:
    """Paths `docker build -f DOCKERFILE .` sends, by Docker's own .dockerignore rules (docker-py's)."""
    lines = (REPO / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    return set(exclude_paths(str(REPO), patterns, dockerfile=str(dockerfile.relative_to(REPO))))


def copied(dockerfile: Path) -> list[str]:
    """The build-context sources of the Dockerfile's COPY instructions (not those from other stages)."""
    sources: list[str] = []
    for line in dockerfile.read_text().splitlines():
        if re.match(r"COPY\s", line) and "--from=" not in line:
            sources.extend(line.split()[1:-1])
    return sources


def tracked(path: str) -> list[str]:
    result = subprocess.run(["git", "ls-files", "--", path], cwd=REPO, capture_output=True, text=True, check=True)
    return result.stdout.split()


def test_there_are_two_dockerfiles() -> None:
    assert [p.name for p in DOCKERFILES] == ["Dockerfile", "Dockerfile.trainer"]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_the_context_holds_every_file_the_dockerfile_copies(dockerfile: Path) -> None:
    sent = context(dockerfile)
    sources = copied(dockerfile)
    assert {"constraints.txt", "pyproject.toml", "README.md", "clients/python", "services"} <= set(sources)
    for source in sources:
        files = tracked(source)
        assert files, source
        missing = [f for f in files if f not in sent]
        assert not missing, f"{dockerfile.name} copies {source}, but .dockerignore leaves out {missing[:5]}"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_the_context_leaves_out_what_no_image_needs(dockerfile: Path) -> None:
    sent = context(dockerfile)
    for path in (".git", ".venv", "node_modules", "tests", "benchmarks", "charts", ".ci", "protos"):
        assert not any(p == path or p.startswith(f"{path}/") for p in sent), path
    assert not any("__pycache__" in p or p.endswith(".pyc") for p in sent)
    size = sum((REPO / p).stat().st_size for p in sent if (REPO / p).is_file())
    assert size < 50 * 1024 * 1024, f"{size / 1e6:.0f} MB of build context"
