"""Thread pools whose threads the operating system knows by name, and their CPU time as a metric.

Python 3.11 names its threads only for itself: to ``top -H``, py-spy and ``/proc`` every thread
of a service is called ``visionloop``. Pools made here also give their threads a native name
(``hub-blob_3``), so the CPU a service spends can be told apart by pool:
``visionloop_thread_cpu_seconds_total{pool="hub-blob"}`` next to ``process_cpu_seconds_total``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import re
import sys
import threading
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

_PR_SET_NAME = 15  # prctl(2)
_NAME_BYTES = 15  # the kernel keeps 15 bytes of a thread's name
_INDEX = re.compile(r"_\d+$")  # a pool thread's number: hub-blob_3 -> hub-blob
_TASKS = Path("/proc/self/task")


def _prctl() -> Callable[..., int] | None:
    if sys.platform != "linux":
        return None
    prctl: Callable[..., int] = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True).prctl
    return prctl


_PRCTL = _prctl()


def name_native_thread(name: str | None = None) -> None:
    """Give the calling OS thread ``name`` (default: its Python name), cut to 15 bytes; Linux only.

    Not for the main thread: its name is the process's, which ``ps``, ``top`` and ``pgrep`` show.
    """
    if _PRCTL is None or threading.current_thread() is threading.main_thread():
        return
    encoded = (name or threading.current_thread().name).encode(errors="replace")[:_NAME_BYTES]
    _PRCTL(_PR_SET_NAME, ctypes.c_char_p(encoded), 0, 0, 0)


def named_executor(max_workers: int | None, prefix: str) -> ThreadPoolExecutor:
    """A ``ThreadPoolExecutor`` whose threads carry ``prefix_N`` natively too."""
    return ThreadPoolExecutor(max_workers, thread_name_prefix=prefix, initializer=name_native_thread)


def pool_of(native_name: str, process_name: str, main: bool) -> str:
    """The pool of a thread by its native name: ``main`` for the main thread, ``other`` for a thread
    nobody named (it carries the process's name)."""
    if main:
        return "main"
    return "other" if native_name == process_name else _INDEX.sub("", native_name)


def read_stat(stat: Path) -> tuple[str, float, int]:
    """Name, CPU seconds (user + system) and start time (clock ticks after boot) of the process or
    thread whose ``/proc`` stat file ``stat`` is, in one read; (id, start time) names it for good,
    as ids are reused."""
    text = stat.read_text()
    name, _, rest = text[text.index("(") + 1 :].rpartition(")")
    # After the parenthesised name: utime, stime and starttime are proc(5)'s 14th, 15th and 22nd.
    fields = rest.split()
    return name, (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), int(fields[19])


def live_threads() -> dict[tuple[str, int], tuple[str, float]]:
    """This process's live threads: (thread id, start time) -> (pool, CPU seconds, user + system)."""
    pid = str(os.getpid())
    if not _TASKS.is_dir():  # not Linux
        return {}
    tasks: list[tuple[str, str, float, int]] = []
    for task in _TASKS.iterdir():
        try:
            tasks.append((task.name, *read_stat(task / "stat")))
        except (FileNotFoundError, ProcessLookupError):  # the thread ended meanwhile
            continue
    # the main thread's name is the process's: a thread nobody named carries it too
    process_name = next((name for tid, name, _, _ in tasks if tid == pid), "")
    return {(tid, start): (pool_of(name, process_name, tid == pid), seconds) for tid, name, seconds, start in tasks}


class ThreadCpu:
    """CPU seconds by pool that never go back: a thread that has ended keeps what it was last seen using.

    /proc lists live threads only; what an ended thread used after the last look is not counted.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: dict[tuple[str, int], tuple[str, float]] = {}
        self._ended: defaultdict[str, float] = defaultdict(float)

    def totals(self) -> defaultdict[str, float]:
        with self._lock:
            live = live_threads()
            for key, (pool, seconds) in self._seen.items():
                if key not in live:
                    self._ended[pool] += seconds
            self._seen = live
            totals = defaultdict(float, self._ended)
            for pool, seconds in live.values():
                totals[pool] += seconds
            return totals


class ThreadCpuCollector(Collector):
    """``visionloop_thread_cpu_seconds_total{pool}``, read from ``/proc`` at each scrape."""

    def __init__(self) -> None:
        self.cpu = ThreadCpu()

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "visionloop_thread_cpu_seconds",
            "CPU time (user + system) of this process's threads by pool: main runs the event loop, "
            "asyncio the blocking calls it hands off (SQL among them), other the threads nobody named.",
            labels=["pool"],
        )
        for pool, seconds in sorted(self.cpu.totals().items()):
            family.add_metric([pool], seconds)
        yield family
