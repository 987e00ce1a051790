"""The stack's Prometheus metrics: each defined once here, counted where it happens.

Several processes serve one stack (ASGI servers, Celery's pool processes). With
`PROMETHEUS_MULTIPROC_DIR` set before any of them starts (`make run` sets it), each writes its
values to files there and `/metrics` (`api.metrics`) adds them up, as `prometheus_client`'s
multiprocess mode does (https://prometheus.github.io/client_python/multiprocess/); without
it, `/metrics` shows the process that answers. README "Metrics" lists every metric.

A counter's `inc()` costs about 1.5 µs in multiprocess mode (a lock and a write to a mapped
file). A frame written to a socket happens up to hundreds of thousands of times a second in
one process (one per recipient of a fan-out), so those are counted in a plain integer first
(`Tally`, about 40 ns) and added to their counter once a second by the process's flusher.
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client import multiprocess as _multiprocess

NAMESPACE = "switchboard"
# Fan-out lag and REST latency: from under a millisecond to seconds.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
# Countdown lateness and job durations: from milliseconds to hours.
JOB_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600, 14400)

SOCKETS_OPEN = Gauge(
    "sockets_open", "WebSockets open now", namespace=NAMESPACE, multiprocess_mode="livesum"
)
SOCKETS_CLOSED = Counter(
    "sockets_closed",
    "WebSockets closed, by close code (4408: a slow client, 4429: a flood, 1012: a restart)",
    ["code"],
    namespace=NAMESPACE,
)
SUBSCRIPTIONS = Gauge(
    "subscriptions",
    "Subscriptions held by open sockets, by channel kind (room, job, jobs, rooms, log)",
    ["kind"],
    namespace=NAMESPACE,
    multiprocess_mode="livesum",
)
FRAMES_IN = Counter(
    "frames_in", "Frames received from clients, by frame type", ["type"], namespace=NAMESPACE
)
FRAMES_OUT = Counter("frames_out", "Frames written to sockets", namespace=NAMESPACE)
FANOUT_LAG = Histogram(
    "fanout_lag_seconds",
    "From a write's commit to its event handed to every local socket's writer",
    namespace=NAMESPACE,
    buckets=LATENCY_BUCKETS,
)
GAPS_REPAIRED = Counter(
    "gaps_repaired",
    "Events the channel layer lost that a feed read back from the database, by feed",
    ["feed"],
    namespace=NAMESPACE,
)
RATE_LIMITED = Counter(
    "rate_limited",
    "Requests refused by a rate limit, by rule (chat, jobs, login, socket frames)",
    ["rule"],
    namespace=NAMESPACE,
)
HTTP_REQUESTS = Histogram(
    "http_request_duration_seconds",
    "REST requests by route, method and status, with their latency",
    ["route", "method", "status"],
    namespace=NAMESPACE,
    buckets=LATENCY_BUCKETS,
)
JOB_LATENESS = Histogram(
    "job_start_lateness_seconds",
    "How long after its countdown ended an attempt started, by kind",
    ["kind"],
    namespace=NAMESPACE,
    buckets=JOB_BUCKETS,
)
JOB_DURATION = Histogram(
    "job_duration_seconds",
    "Attempts' durations, by kind and how they ended",
    ["kind", "status"],
    namespace=NAMESPACE,
    buckets=JOB_BUCKETS,
)
JOBS_FINISHED = Counter(
    "jobs_finished",
    "Jobs that reached a final state, by kind and state",
    ["kind", "status"],
    namespace=NAMESPACE,
)
REDIS_ERRORS = Counter(
    "redis_errors", "Failed sends to the channel layer (Redis or RabbitMQ)", namespace=NAMESPACE
)
DATABASE_ERRORS = Counter(
    "database_errors", "Requests and socket frames that failed on the database", namespace=NAMESPACE
)


class Tally:
    """A count kept in a plain integer, added to `counter` by `flush` (see the module's doc)."""

    __slots__ = ("count", "counter")

    def __init__(self, counter: Counter) -> None:
        self.counter = counter
        self.count = 0

    def flush(self) -> None:
        count, self.count = self.count, 0
        if count:
            self.counter.inc(count)


FRAMES_OUT_TALLY = Tally(FRAMES_OUT)
TALLIES = (FRAMES_OUT_TALLY,)
FLUSH_INTERVAL = 1.0


def flush_tallies() -> None:
    for tally in TALLIES:
        tally.flush()


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def registry() -> CollectorRegistry:
    """What `/metrics` shows: every process's metrics (multiprocess mode), else this one's."""
    flush_tallies()
    path = multiprocess_dir()
    if path is None:
        from prometheus_client import REGISTRY

        return REGISTRY
    collected = CollectorRegistry()
    _multiprocess.MultiProcessCollector(collected, path=path)
    return collected


def process_ended(pid: int | None = None) -> None:
    """A process's live gauges stop counting once it has ended (multiprocess mode)."""
    if multiprocess_dir() is not None:
        with contextlib.suppress(OSError):
            _multiprocess.mark_process_dead(pid or os.getpid())


def elapsed_since(timestamp: Any) -> float | None:
    """Seconds since a wall-clock `timestamp` carried by an event (None if it has none)."""
    if not isinstance(timestamp, float | int):
        return None
    return max(0.0, time.time() - float(timestamp))
