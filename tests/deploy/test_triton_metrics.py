"""The Triton dashboard and alert query metric names a real Triton server exports."""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from tests.deploy.conftest import alert_queries, dashboard_queries, exported_names, metric_names
from tests.detector.triton_server import HOST, TritonServer

CONFIG = """
name: "identity"
backend: "python"
max_batch_size: 8
input [{ name: "INPUT0", data_type: TYPE_FP32, dims: [ 4 ] }]
output [{ name: "OUTPUT0", data_type: TYPE_FP32, dims: [ 4 ] }]
instance_group [{ kind: KIND_CPU, count: 1 }]
dynamic_batching { }
"""

MODEL = """
import numpy as np
import triton_python_backend_utils as pb_utils


# dlpack both ways: the stub was built against numpy 1, this environment has numpy 2.
class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            values = np.array(np.from_dlpack(pb_utils.get_input_tensor_by_name(request, "INPUT0")), copy=True)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor.from_dlpack("OUTPUT0", values)]))
        return responses
"""


SUCCESS_SAMPLE = 'nv_inference_request_success{model="identity",version="1"} 1'


def scrape_until(url: str, sample: str, timeout: float = 15.0) -> str:
    """Triton records a request's statistics after the response went out, so the first scrape may miss it."""
    deadline = time.monotonic() + timeout
    while True:
        with urllib.request.urlopen(url, timeout=10) as response:
            exposition = response.read().decode()
        if sample in exposition or time.monotonic() > deadline:
            return exposition
        time.sleep(0.2)


@pytest.mark.slow
def test_triton_exports_every_nv_metric_we_query(tmp_path: Path) -> None:
    repository = tmp_path / "models"
    (repository / "identity" / "1").mkdir(parents=True)
    (repository / "identity" / "config.pbtxt").write_text(CONFIG)
    (repository / "identity" / "1" / "model.py").write_text(MODEL)
    server = TritonServer(repository, tmp_path)
    server.start()
    try:
        with grpcclient.InferenceServerClient(server.grpc_url) as client:
            client.load_model("identity")  # explicit model control, as in the chart and compose
            request = grpcclient.InferInput("INPUT0", [1, 4], "FP32")
            request.set_data_from_numpy(np.arange(4, dtype=np.float32)[None])
            answer = client.infer("identity", [request]).as_numpy("OUTPUT0")
        assert answer.tolist() == [[0, 1, 2, 3]]
        exposition = scrape_until(f"http://{HOST}:{server.metrics_port}/metrics", SUCCESS_SAMPLE)
    finally:
        server.stop()
    exported = exported_names(exposition)
    queried = {
        (where, name)
        for where, expr in dashboard_queries() + alert_queries()
        for name in metric_names(expr)
        if name.startswith("nv_")
    }
    assert {name for _, name in queried} >= {"nv_inference_queue_duration_us", "nv_inference_request_success"}
    missing = sorted((where, name) for where, name in queried if name not in exported)
    assert not missing, missing
    assert SUCCESS_SAMPLE in exposition
