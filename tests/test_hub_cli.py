"""The hub's CLI commands against a hub started through the CLI (SQLite + folder)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests import crafted
from tests.harness import VISIONLOOP, base_env, serve
from tests.hub.pictures import picture


def run(args: list[str], tmp_path: Path, port: int) -> subprocess.CompletedProcess[str]:
    env = base_env(tmp_path, {"LOOP_HOST": f"127.0.0.1:{port}", "LOOP_ORGANIZATION": "acme", "LOOP_PROJECT": "weeds"})
    return subprocess.run([VISIONLOOP, *args], capture_output=True, text=True, timeout=120, env=env)


def test_projects_categories_upload_and_models(tmp_path: Path) -> None:
    folder = tmp_path / "pictures"
    (folder / "day2").mkdir(parents=True)
    for i in range(5):
        (folder / f"p{i}.jpg").write_bytes(picture(i))
    (folder / "day2" / "again.jpg").write_bytes(picture(0))  # same bytes: a duplicate
    (folder / "day2" / "broken.png").write_bytes(b"not a png")
    (folder / "day2" / "bomb.png").write_bytes(crafted.zero_png())  # 136 KiB declaring 12000x12000
    (folder / "zz-huge.jpg").write_bytes(crafted.declared_jpeg(60000, 60000))  # the last one sent

    with serve("loop", tmp_path) as hub:
        port = hub.ports()["loop"]
        missing = run(["upload", str(folder)], tmp_path, port)
        assert missing.returncode == 1
        assert "acme/weeds does not exist" in missing.stderr

        assert (
            run(["projects", "create", "--display-name", "Weeds"], tmp_path, port).stdout.strip()
            == "created acme/weeds"
        )
        assert "acme/weeds\tWeeds" in run(["projects", "list"], tmp_path, port).stdout
        assert run(["categories", "create", "thistle", "--type", "point"], tmp_path, port).returncode == 0
        assert "thistle" in run(["categories", "list"], tmp_path, port).stdout

        uploaded = run(["upload", str(folder), "--tag", "field-3", "--camera-id", "front"], tmp_path, port)
        assert uploaded.returncode == 1  # files were refused
        assert uploaded.stdout.strip() == "5 added, 1 already there, 3 refused"
        refusals = [line for line in uploaded.stderr.splitlines() if line.startswith(str(folder))]
        assert refusals == [
            f"{folder / 'day2' / 'bomb.png'}: RESOURCE_EXHAUSTED: image is 12000x12000 pixels; "
            "the limit is 100000000 pixels",
            f"{folder / 'day2' / 'broken.png'}: INVALID_ARGUMENT: image is neither JPEG nor PNG "
            "(its bytes are not a recognised image)",
            f"{folder / 'zz-huge.jpg'}: RESOURCE_EXHAUSTED: image is 60000x60000 pixels; the limit is 100000000 pixels",
        ]
        assert "9/9" in uploaded.stderr  # the progress bar finished

        assert run(["models", "list"], tmp_path, port).stdout == ""
        pin = run(["models", "pin", "9.9"], tmp_path, port)
        assert pin.returncode == 1
        assert "NOT_FOUND" in pin.stderr
