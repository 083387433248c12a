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
from collections import Counter
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


def thread_cpu_seconds() -> Counter[str]:
    """CPU seconds (user + system) this process's live threads have used, summed by pool.

    Threads that have exited are no longer listed, so a pool's figure can fall back when one of
    its threads ends; pools here keep their threads for the life of the process.
    """
    ticks = os.sysconf("SC_CLK_TCK")
    pid = str(os.getpid())
    totals: Counter[str] = Counter()
    try:
        process_name = (_TASKS / pid / "comm").read_text().rstrip("\n")
    except FileNotFoundError:  # not Linux
        return totals
    for task in _TASKS.iterdir():
        try:
            name = (task / "comm").read_text().rstrip("\n")
            # Fields after the parenthesised name; utime and stime are the 14th and 15th of stat(5).
            fields = (task / "stat").read_text().rpartition(")")[2].split()
        except (FileNotFoundError, ProcessLookupError):  # the thread ended meanwhile
            continue
        totals[pool_of(name, process_name, task.name == pid)] += (int(fields[11]) + int(fields[12])) / ticks
    return totals


class ThreadCpuCollector(Collector):
    """``visionloop_thread_cpu_seconds_total{pool}``, read from ``/proc`` at each scrape."""

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "visionloop_thread_cpu_seconds",
            "CPU time (user + system) of this process's threads by pool: main runs the event loop, "
            "asyncio the blocking calls it hands off (SQL among them), other the threads nobody named.",
            labels=["pool"],
        )
        for pool, seconds in sorted(thread_cpu_seconds().items()):
            family.add_metric([pool], seconds)
        yield family
