"""Native thread names for pools, and the CPU they use by pool (visionloop_thread_cpu_seconds_total)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from prometheus_client import generate_latest

import visionloop.runtime.metrics  # noqa: F401  registers the collector
from visionloop.runtime.threads import name_native_thread, named_executor, pool_of, thread_cpu_seconds

pytestmark = pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads Linux's /proc")


def native_name() -> str:
    return Path(f"/proc/self/task/{threading.get_native_id()}/comm").read_text().rstrip("\n")


def burn(seconds: float) -> float:
    """Use ``seconds`` of this thread's CPU time."""
    start = time.thread_time()
    while time.thread_time() - start < seconds:
        pass
    return time.thread_time() - start


def test_a_named_pool_names_its_threads_for_the_operating_system() -> None:
    with named_executor(2, "vl-test-pool") as pool:
        names = {pool.submit(lambda: (time.sleep(0.05), native_name())[1]).result() for _ in range(2)}
    assert names <= {"vl-test-pool_0", "vl-test-pool_1"}
    assert names


def test_a_long_name_is_cut_to_what_the_kernel_keeps() -> None:
    seen: list[str] = []

    def run() -> None:
        name_native_thread("a-name-longer-than-fifteen-bytes")
        seen.append(native_name())

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    assert seen == ["a-name-longer-t"]


def test_the_main_thread_keeps_the_process_name() -> None:
    before = native_name()
    name_native_thread("not-the-process")
    assert native_name() == before


def test_pools_are_told_apart_by_name() -> None:
    assert pool_of("hub-blob_31", "visionloop", main=False) == "hub-blob"
    assert pool_of("event_engine", "visionloop", main=False) == "event_engine"
    assert pool_of("visionloop", "visionloop", main=False) == "other"
    assert pool_of("visionloop", "visionloop", main=True) == "main"


def test_cpu_a_pool_uses_is_counted_under_its_name() -> None:
    with named_executor(1, "vl-burner") as pool:
        before = thread_cpu_seconds()["vl-burner"]  # 0: the pool has no thread yet
        used = pool.submit(burn, 0.3).result()
        after = thread_cpu_seconds()
        # Linux counts in clock ticks (10 ms)
        assert after["vl-burner"] - before == pytest.approx(used, abs=0.05)
        assert after["main"] > 0
        exported = generate_latest().decode()
    assert 'visionloop_thread_cpu_seconds_total{pool="vl-burner"}' in exported
    assert 'visionloop_thread_cpu_seconds_total{pool="main"}' in exported
