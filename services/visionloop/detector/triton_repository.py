"""The detector's side of the shared Triton model repository.

The converter writes the entries (``visionloop.converter.triton_entries``): one per hub model
version and Triton format, named ``<organization>.<project>.<version>.<format>``, in the object
store Triton reads (a folder in embedded mode, an S3 prefix in a cluster). The detector only asks
Triton, through its repository API, which entries exist and loads the one for the version it
follows: ``triton_onnx`` first (Triton's onnxruntime backend, on GPUs), then ``triton_python``
(the python backend, on a CPU-only Triton). A model the converter did not publish (a static
``DETECTOR_MODEL_PATHS`` model, a version not converted yet) still gets a python-backend entry
written by the detector into ``TRITON_MODEL_REPOSITORY``, with the converter's writer.
"""

from __future__ import annotations

from visionloop.common.v1 import model_pb2
from visionloop.converter.triton_entries import ONNX, PYTHON, entry_name, write_python_backend_entry

PREFERRED_FORMATS = (ONNX, PYTHON)  # the GPU entry when this Triton can load it, else the CPU one

__all__ = ["PREFERRED_FORMATS", "published_entries", "write_python_backend_entry"]


def published_entries(info: model_pb2.ModelInfo, available: set[str]) -> list[str]:
    """The converter's entries for the hub version in ``info`` that ``available`` (the repository
    index) holds, in the order to try them; empty for models that did not come from a hub."""
    if not (info.organization and info.project and info.version):
        return []
    names = [entry_name(info.organization, info.project, info.version, fmt) for fmt in PREFERRED_FORMATS]
    return [name for name in names if name in available]
