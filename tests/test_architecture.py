"""The import rule (pyproject.toml's [tool.importlinter]): layers, independent services, no cycles.

The rule is checked with import-linter as a developer runs it, on this tree, and on copies of the
tree with one forbidden import added, which it must refuse.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LINT = "from importlinter.cli import lint_imports_command; lint_imports_command()"


def lint_imports(services: Path) -> subprocess.CompletedProcess[str]:
    """lint-imports over ``services`` (a folder holding ``visionloop``) and the client distribution.

    ``-S``: no site initialisation, so the editable install's path to this checkout's services/ is
    not added beside ``services``; the third-party packages come from site-packages on PYTHONPATH.
    """
    path = [str(services), str(REPO / "clients" / "python"), sysconfig.get_paths()["purelib"]]
    command = [sys.executable, "-S", "-c", LINT, "--config", str(REPO / "pyproject.toml"), "--no-cache"]
    env = {"PYTHONPATH": ":".join(path), "PATH": "/usr/bin:/bin", "COLUMNS": "200"}
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


def test_the_tree_keeps_the_import_rule() -> None:
    result = lint_imports(REPO / "services")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "imported", "refusal"),
    [
        # a service reaching into another service
        (
            "server/detector/service.py",
            "visionloop.server.hub.state",
            "visionloop.server.detector is not allowed to import visionloop.server.hub",
        ),
        (
            "server/trainer/machine.py",
            "visionloop.server.converter.pipeline",
            "visionloop.server.trainer is not allowed",
        ),
        # the library layer importing a service, the runtime importing the library
        ("lib/geometry.py", "visionloop.server.annotator.masks", "visionloop.lib is not allowed to import"),
        ("runtime/files.py", "visionloop.lib.images", "visionloop.runtime is not allowed to import visionloop.lib"),
        # a service importing the development tools or the CLI
        ("server/hub/app.py", "visionloop.testing.servers", "visionloop.server is not allowed to import"),
        ("server/converter/app.py", "visionloop.cli.main", "visionloop.server is not allowed to import"),
        # a service using the catalog of all services
        ("server/annotator/app.py", "visionloop.server.catalog", "visionloop.server.catalog"),
        # a cycle inside a service
        ("server/hub/config.py", "visionloop.server.hub.app", "No cycles are allowed in visionloop.server.hub"),
    ],
)
def test_a_forbidden_import_is_refused(tmp_path: Path, module: str, imported: str, refusal: str) -> None:
    services = tmp_path / "services"
    shutil.copytree(REPO / "services" / "visionloop", services / "visionloop", ignore=shutil.ignore_patterns("*.pyc"))
    target = services / "visionloop" / module
    assert target.is_file(), f"{module} is gone: name another module"
    target.write_text(target.read_text() + f"\nimport {imported}  # noqa: E402\n")
    result = lint_imports(services)
    assert result.returncode == 1, result.stdout + result.stderr
    assert refusal in " ".join(result.stdout.split()), result.stdout
