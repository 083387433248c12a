"""benchmarks/hub_benchmark.py: its CPU split by process (from Linux's /proc) and the bound it sets each path."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks.hub_benchmark import CLIENT, S3_SERVER, cpu_by_process, machine_bound, process_cpu, process_role

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="reads Linux's /proc")

ROUNDING = 1e-9
SPIN = "import time\nstart = time.process_time()\nwhile time.process_time() - start < {seconds}: pass\n"


def spin(seconds: float) -> None:
    start = time.process_time()
    while time.process_time() - start < seconds:
        pass


def test_processes_are_told_apart_by_role() -> None:
    assert process_role(12, "python", b"python\0-m\0moto.server\0-p\x005000\0") == "S3 server"
    assert process_role(13, "postgres", b"postgres: visionloop hub 127.0.0.1(5151) idle\0") == "PostgreSQL"
    assert process_role(14, "visionloop", b"/repo/.venv/bin/python\0/repo/.venv/bin/visionloop\0serve\0loop\0") == "hub"
    assert process_role(15, "bash", b"bash\0") == "other"


def test_cpu_between_two_readings_is_split_by_role() -> None:
    before = process_cpu()
    child = subprocess.Popen([sys.executable, "-c", SPIN.format(seconds=0.3) + "input()\n"], stdin=subprocess.PIPE)
    try:
        spin(0.2)
        time.sleep(0.5)  # the child spins meanwhile, then waits on its input
        spent = cpu_by_process(before, process_cpu())
    finally:
        child.communicate(b"\n", timeout=30)
    # Whole clock ticks (1/100 s) as floats: a difference of readings can land a hair under 0.19.
    assert spent[CLIENT] >= 0.19 - ROUNDING  # this process: at least its own spin (one tick short at worst)
    assert spent["other"] >= 0.29 - ROUNDING  # the child's spin, from its start on (not in the first reading)


def test_a_paths_bound_is_its_cores_or_the_s3_servers_one_core_whichever_is_less() -> None:
    # The raw path: moto's 1.6 ms per image fill its one core before the 2.2 ms in all fill two.
    assert machine_bound({S3_SERVER: 1.6, CLIENT: 0.6}, cores=2) == (
        pytest.approx(625.0),
        "the S3 server's one core at 1.60 ms per image",
    )
    # A hub path: 4 ms per image in all fill two cores before moto's 1.6 ms fill its one.
    rate, by = machine_bound({"hub": 2.0, S3_SERVER: 1.6, CLIENT: 0.2, "PostgreSQL": 0.2}, cores=2)
    assert rate == pytest.approx(500.0)
    assert by == "2 cores at 4.00 ms of machine CPU per image"
    assert machine_bound({"hub": 2.0}, cores=4) == (
        pytest.approx(2000.0),
        "4 cores at 2.00 ms of machine CPU per image",
    )
    assert machine_bound({}, cores=2) is None
