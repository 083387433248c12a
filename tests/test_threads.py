"""Native thread names for pools, and the CPU they use by pool (visionloop_thread_cpu_seconds_total)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from prometheus_client import generate_latest

import visionloop.runtime.metrics  # noqa: F401  registers the collector
from visionloop.runtime.threads import ThreadCpu, live_threads, name_native_thread, named_executor, pool_of

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
    cpu = ThreadCpu()
    with named_executor(1, "vl-burner") as pool:
        assert cpu.totals()["vl-burner"] == 0  # the pool starts its thread on the first task
        used = pool.submit(burn, 0.3).result()
        after = cpu.totals()
        # Linux counts in clock ticks (10 ms)
        assert after["vl-burner"] == pytest.approx(used, abs=0.05)
        assert after["main"] > 0
        exported = generate_latest().decode()
    assert 'visionloop_thread_cpu_seconds_total{pool="vl-burner"}' in exported
    assert 'visionloop_thread_cpu_seconds_total{pool="main"}' in exported


def test_a_pool_keeps_its_count_once_its_threads_end() -> None:
    """A counter: the pool's figure must not fall back when its threads exit (Prometheus would read a reset)."""
    cpu = ThreadCpu()
    with named_executor(2, "vl-ending") as pool:
        used = sum(pool.map(burn, [0.2, 0.2]))
        during = cpu.totals()["vl-ending"]
    # join() returns before the OS thread is gone: wait until /proc no longer lists the pool's threads
    deadline = time.monotonic() + 5
    while any(pool_name == "vl-ending" for pool_name, _ in live_threads().values()):
        assert time.monotonic() < deadline, "the pool's threads did not exit"
        time.sleep(0.01)
    assert cpu.totals()["vl-ending"] == during == pytest.approx(used, abs=0.05)
    with named_executor(1, "vl-ending") as pool:
        more = pool.submit(burn, 0.1).result()
        assert cpu.totals()["vl-ending"] == pytest.approx(used + more, abs=0.05)
