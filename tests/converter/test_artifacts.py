"""Model zips are untrusted: the converter refuses unsafe ones and ones without model.json, for good."""

from __future__ import annotations

import json
import stat
import zipfile
from pathlib import Path

import pytest

from tests.converter.conftest import onnx_stub_zip
from visionloop.lib.model_format.model_json import pack
from visionloop.server.converter.artifacts import unpack
from visionloop.server.converter.errors import ConversionFailed

LIMIT = 64 * 1024**2
MODEL_JSON = json.dumps({"format": "onnx", "categories": [{"name": "weed", "type": "box"}]})


def zip_with(path: Path, *entries: tuple[zipfile.ZipInfo | str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for info, data in entries:
            archive.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED)
    return path


def link(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


@pytest.mark.parametrize(
    ("entries", "reason"),
    [
        ([("model.json", MODEL_JSON), ("../../etc/cron.d/job", "x")], "escapes the archive with '..'"),
        ([("model.json", MODEL_JSON), ("/tmp/evil", "x")], "has an absolute path"),
        ([("model.json", MODEL_JSON), (link("model.onnx"), "/etc/shadow")], "is a symbolic link"),
        ([("model.json", MODEL_JSON), ("model.onnx", "\0" * (20 * 1024**2))], "(a zip bomb?)"),
        ([("model.onnx", "weights")], "the model zip has no model.json at its top level"),
        ([("nested/model.json", MODEL_JSON)], "the model zip has no model.json at its top level"),
        ([("model.json", "{not json")], "model.json is not valid JSON"),
    ],
)
def test_unusable_model_zips_are_refused_permanently(
    tmp_path: Path, entries: list[tuple[zipfile.ZipInfo | str, str]], reason: str
) -> None:
    archive = zip_with(tmp_path / "model.zip", *[(info, data.encode()) for info, data in entries])
    with pytest.raises(ConversionFailed) as caught:
        unpack(archive, tmp_path / "unpacked", LIMIT)
    assert reason in caught.value.reason
    assert caught.value.permanent  # the hub must not offer it again
    assert not (tmp_path / "etc").exists()


def test_not_a_zip(tmp_path: Path) -> None:
    junk = tmp_path / "model.zip"
    junk.write_bytes(b"PK but not really")
    with pytest.raises(ConversionFailed, match="not a zip file"):
        unpack(junk, tmp_path / "out", LIMIT)


def test_a_good_zip_unpacks_and_packs_back(tmp_path: Path) -> None:
    model = unpack(onnx_stub_zip(tmp_path / "stub.zip"), tmp_path / "unpacked", LIMIT)
    assert model.info.output.tensor_names == ["output0"]
    assert (model.path / "model.onnx").is_file()
    (model.path / "1").mkdir()
    (model.path / "1" / "model.py").write_text("pass")
    packed = pack(model.path, tmp_path / "packed.zip")
    with zipfile.ZipFile(packed) as archive:
        assert archive.namelist() == ["model.json", "1/model.py", "model.onnx"]  # model.json first
