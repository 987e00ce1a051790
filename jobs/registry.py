"""The job kinds a client may enqueue, each with a params schema; nothing else can run.

A project adds its own kind with `job_kind` in a `job_kinds` module of one of its Django apps
(found when the apps are ready, as `admin` modules are): see the README's "Add a job kind".
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

if TYPE_CHECKING:
    from .models import Job
    from .reporter import Reporter

Runner = Callable[["Job", Any, "Reporter"], BaseModel | dict[str, Any] | None]

# A kind's name: dotted lowercase words, as `demo.sleep` or `billing.invoice_pdf`.
KIND_NAME_CHARS = r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*"
MAX_ATTEMPTS_LIMIT = 20


class TimeLimitExceeded(Exception):
    """Raised in a job that ran past its kind's soft time limit; also the error of one that
    ran past its hard limit and was stopped. Retried if its kind's policy names it."""


class WorkerLost(Exception):
    """The error of an attempt whose process died under it (killed, out of memory)."""


@dataclass(frozen=True)
class Retry:
    """How a kind's failed attempts are tried again.

    `attempts` counts every try, the first included (1: never again). The wait before try
    n+1 is `backoff * factor**(n-1)` seconds, at most `max_backoff`, of which a random part
    up to `jitter` (a fraction) is taken off, so that jobs that failed together do not all
    come back together. Only errors that are instances of `on` are tried again; a cancel
    never is.
    """

    attempts: int = 1
    backoff: float = 2.0
    factor: float = 2.0
    max_backoff: float = 600.0
    jitter: float = 0.5
    on: tuple[type[BaseException], ...] = (Exception,)

    def __post_init__(self) -> None:
        if not 1 <= self.attempts <= MAX_ATTEMPTS_LIMIT:
            raise ValueError(f"attempts must be 1..{MAX_ATTEMPTS_LIMIT}")
        if self.backoff < 0 or self.factor < 1 or self.max_backoff < 0:
            raise ValueError("backoff and max_backoff must be >= 0, factor >= 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter is a fraction, 0..1")

    def retries(self, error: type[BaseException]) -> bool:
        return issubclass(error, self.on)

    def delay(self, failed_attempt: int) -> float:
        """Seconds to wait after attempt `failed_attempt` (1-based) failed."""
        full = min(self.max_backoff, self.backoff * self.factor ** max(0, failed_attempt - 1))
        return full * (1 - self.jitter * random.random())  # noqa: S311 - spreading, not crypto


@dataclass(frozen=True)
class JobKind:
    name: str
    title: str
    params: type[BaseModel]
    run: Runner
    result: type[BaseModel] | None = None
    retry: Retry = field(default_factory=Retry)
    # Seconds an attempt may run: past `soft_time_limit` the job gets `TimeLimitExceeded`
    # raised in it (it may clean up); past `time_limit` its process is stopped. None: the
    # settings' defaults (JOBS_SOFT_TIME_LIMIT, JOBS_TIME_LIMIT).
    soft_time_limit: float | None = None
    time_limit: float | None = None
    # Seconds a cancelled job has to stop on its own before its process is stopped
    # (None: JOBS_CANCEL_GRACE).
    cancel_grace: float | None = None

    def params_schema(self) -> dict[str, Any]:
        return self.params.model_json_schema()

    def result_schema(self) -> dict[str, Any] | None:
        return None if self.result is None else self.result.model_json_schema()


_KINDS: dict[str, JobKind] = {}


def job_kind(
    name: str,
    title: str,
    params: type[BaseModel],
    *,
    result: type[BaseModel] | None = None,
    retry: Retry | None = None,
    soft_time_limit: float | None = None,
    time_limit: float | None = None,
    cancel_grace: float | None = None,
) -> Callable[[Runner], Runner]:
    """Register a function as the runner of kind `name`.

    The function gets the job, its params (an instance of `params`, validated when the job
    was enqueued) and a `Reporter`; it returns the result: an instance of `result` if the
    kind declares one, else a JSON-ready dict or None. It runs in a process of its own, so
    that a cancel or a time limit can always stop it.
    """
    if not re.fullmatch(KIND_NAME_CHARS, name) or len(name) > 64:
        raise ValueError(f"job kind name {name!r} is not dotted lowercase words (64 at most)")
    for label, seconds in (("soft_time_limit", soft_time_limit), ("time_limit", time_limit)):
        if seconds is not None and seconds <= 0:
            raise ValueError(f"{label} must be > 0")
    if soft_time_limit and time_limit and soft_time_limit >= time_limit:
        raise ValueError("soft_time_limit must be below time_limit")

    def register(run: Runner) -> Runner:
        if name in _KINDS:
            raise ValueError(f"job kind {name!r} registered twice")
        _KINDS[name] = JobKind(
            name=name,
            title=title,
            params=params,
            run=run,
            result=result,
            retry=retry or Retry(),
            soft_time_limit=soft_time_limit,
            time_limit=time_limit,
            cancel_grace=cancel_grace,
        )
        return run

    return register


def kind_get(name: str) -> JobKind | None:
    return _KINDS.get(name)


def kinds_all() -> list[JobKind]:
    return sorted(_KINDS.values(), key=lambda kind: kind.name)


def kind_names() -> list[str]:
    """The names of the kinds a client may enqueue (the API schema's `KindEnum`)."""
    return [kind.name for kind in kinds_all()]
