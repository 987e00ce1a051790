"""CPU and memory of the benchmarked processes, the load generator and the machine, by psutil."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from dataclasses import dataclass
from typing import Any

import psutil

# Before measuring, wait (up to a limit) until other processes use less than this share of a
# core: the servers are pinned to one core, and a busy neighbour skews every column.
MACHINE_QUIET = 0.25


def cpu_seconds(proc: Any) -> float:
    """User+system CPU of a process and its live descendants, and of the children each of them
    has reaped (a Celery worker's job processes, reaped by its fork server, among them)."""
    total = 0.0
    with contextlib.suppress(psutil.NoSuchProcess):
        for each in [proc, *proc.children(recursive=True)]:
            with contextlib.suppress(psutil.NoSuchProcess):
                times = each.cpu_times()
                total += times.user + times.system + times.children_user + times.children_system
    return total


def own_cpu_seconds() -> float:
    """User+system CPU of this process (the load generator) alone, not of the servers it runs."""
    times = psutil.Process().cpu_times()
    return float(times.user + times.system)


def machine_busy_seconds() -> float:
    """CPU time every core spent on anything but idling, since boot."""
    times = psutil.cpu_times()
    return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))


def rss_bytes(proc: Any) -> int:
    """Resident memory of a process and its live descendants."""
    total = 0
    with contextlib.suppress(psutil.NoSuchProcess):
        total += proc.memory_info().rss
        for child in proc.children(recursive=True):
            with contextlib.suppress(psutil.NoSuchProcess):
                total += child.memory_info().rss
    return int(total)


def process(pid: int) -> Any:
    """The psutil handle of a process."""
    return psutil.Process(pid)


async def machine_quiet(limit: float) -> float:
    """Wait up to `limit` s until others use under MACHINE_QUIET of a core; their last use."""
    deadline = time.monotonic() + limit
    while True:
        busy, own = machine_busy_seconds(), own_cpu_seconds()
        await asyncio.sleep(1.0)
        other = max(0.0, machine_busy_seconds() - busy - (own_cpu_seconds() - own))
        if other <= MACHINE_QUIET or time.monotonic() >= deadline:
            return other
        print(f"waiting for a quieter machine: others use {other:.0%} of a core", file=sys.stderr)


async def process_idle(proc: Any, limit: float, sample: float = 0.5) -> bool:
    """Wait up to `limit` s until `proc` uses under 5% of a core over `sample` s; whether it did."""
    deadline = time.monotonic() + limit
    before = cpu_seconds(proc)
    while time.monotonic() < deadline:
        await asyncio.sleep(sample)
        now = cpu_seconds(proc)
        if now - before < 0.05 * sample:
            return True
        before = now
    return False


@dataclass
class Usage:
    """CPU seconds over one measured phase: each watched process, this one, everything else."""

    seconds: float  # the phase's wall-clock length
    cpu: dict[str, float]  # by the name the process was watched under
    loadgen: float
    other: float


class CpuProbe:
    """Reads the CPU counters of named processes at the start and at the end of a phase."""

    def __init__(self, **procs: Any) -> None:
        # None stands for a process this run does not have (the ceiling's Redis).
        self.procs = {name: proc for name, proc in procs.items() if proc is not None}
        self.cpu0: dict[str, float] = {}
        self.loadgen0 = self.busy0 = self.started = 0.0

    def start(self) -> None:
        """Read every counter now."""
        self.cpu0 = {name: cpu_seconds(proc) for name, proc in self.procs.items()}
        self.loadgen0 = own_cpu_seconds()
        self.busy0 = machine_busy_seconds()
        self.started = time.perf_counter()

    def stop(self) -> Usage:
        """The differences since `start`."""
        seconds = time.perf_counter() - self.started
        cpu = {name: cpu_seconds(proc) - self.cpu0[name] for name, proc in self.procs.items()}
        loadgen = own_cpu_seconds() - self.loadgen0
        # Whatever else ran meanwhile (another test run, a build) is noise in every column.
        other = max(0.0, machine_busy_seconds() - self.busy0 - sum(cpu.values()) - loadgen)
        return Usage(seconds, cpu, loadgen, other)
