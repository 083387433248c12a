"""The Triton model repository in the object store: a folder (embedded) or an S3 prefix (cluster).

Triton reads both directly (``--model-repository=/folder`` or ``s3://host:port/bucket/prefix``)
and loads entries on request (explicit model control), so the converter only writes files here.
Each entry's files are written model files first and config.pbtxt last: an S3 prefix has no
atomic multi-object write, and an entry without config.pbtxt is not an entry yet.
"""

from __future__ import annotations

from pathlib import Path

from visionloop.lib.storage import LocalObjectStore, ObjectStore, S3ObjectStore
from visionloop.server.converter.config import ConverterSettings
from visionloop.server.converter.triton_s3 import triton_s3_url

CONFIG = "config.pbtxt"


class TritonRepository:
    """Entries by name in an object store; ``location`` is what Triton's --model-repository takes."""

    def __init__(self, store: ObjectStore, location: str) -> None:
        self.store = store
        self.location = location

    @classmethod
    def from_settings(cls, settings: ConverterSettings) -> TritonRepository:
        if settings.s3_endpoint:
            store = S3ObjectStore(
                settings.s3_endpoint,
                settings.s3_bucket,
                settings.s3_access_key_id,
                settings.s3_secret_access_key,
                settings.s3_region,
                prefix=settings.triton_prefix,
            )
            store.ensure_bucket()
            return cls(store, triton_s3_url(settings.s3_endpoint, settings.s3_bucket, settings.triton_prefix))
        folder = (settings.triton_model_repository or settings.data_dir / "triton").resolve()
        return cls(LocalObjectStore(folder), str(folder))

    def publish(self, name: str, files: dict[str, Path | bytes]) -> None:
        """Write the entry ``name`` (blocking); files in order, config.pbtxt last whatever the order given."""
        ordered = sorted(files.items(), key=lambda item: item[0] == CONFIG)
        for relative, content in ordered:
            key = f"{name}/{relative}"
            if isinstance(content, Path):
                self.store.put_file(key, content)
            else:
                self.store.put_bytes(key, content)

    def has(self, name: str) -> bool:
        return self.store.exists(f"{name}/{CONFIG}")
