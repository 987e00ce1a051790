"""Job kinds a project would write itself, with the public decorator, as the README's "Add a
job kind" guide does. The test settings install this app; the tests run its kinds end to end
on real workers: retries, cancelling a job that never checks, time limits."""

from __future__ import annotations

import time
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from jobs import Retry, TimeLimitExceeded, job_kind
from jobs.models import Job
from jobs.reporter import JobCancelled, Reporter


class FlakyParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    fail_times: int = Field(default=1, ge=0, le=20, description="Attempts that fail first")
    error: Literal["ConnectionError", "ValueError"] = Field(
        default="ConnectionError", description="What they raise (only ConnectionError retries)"
    )


class FlakyResult(BaseModel):
    attempt: int = Field(description="The attempt that succeeded")


@job_kind(
    "tests.flaky",
    "Fail the first attempts, then succeed",
    FlakyParams,
    result=FlakyResult,
    retry=Retry(attempts=3, backoff=0.3, factor=2, jitter=0.5, on=(ConnectionError,)),
)
def flaky(job: Job, params: FlakyParams, reporter: Reporter) -> FlakyResult:
    reporter.log(f"attempt {job.attempts}")
    if job.attempts <= params.fail_times:
        error = ConnectionError if params.error == "ConnectionError" else ValueError
        raise error(f"attempt {job.attempts} failed")
    return FlakyResult(attempt=job.attempts)


class StuckParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    how: Literal["sleep", "busy"] = Field(default="sleep", description="Block or spin")
    seconds: float = Field(default=60, ge=0, le=600)
    stubborn: bool = Field(default=False, description="Go on when told to stop (SIGUSR1)")


@job_kind(
    "tests.stuck",
    "Never check for a cancel: a blocking sleep or a busy loop",
    StuckParams,
    cancel_grace=1,
)
def stuck(job: Job, params: StuckParams, reporter: Reporter) -> dict[str, float]:
    reporter.progress(0, 1, f"stuck ({params.how})")
    started = time.monotonic()
    deadline = started + params.seconds
    while time.monotonic() < deadline:
        try:
            if params.how == "sleep":
                time.sleep(max(0.0, deadline - time.monotonic()))
            else:
                while time.monotonic() < deadline:
                    pass
        except JobCancelled:
            if not params.stubborn:
                raise
    return {"seconds": time.monotonic() - started}


# The same with a longer grace: long enough for a browser to show `cancelling` on a busy machine.
job_kind(
    "tests.stuck_long_grace",
    "Never check for a cancel, with a 4 s grace",
    StuckParams,
    cancel_grace=4,
)(stuck)


class OvertimeParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seconds: float = Field(default=30, ge=0, le=600)
    ignore_soft_limit: bool = Field(default=False, description="Go on past the soft limit")


@job_kind(
    "tests.overtime",
    "Run past its time limits",
    OvertimeParams,
    soft_time_limit=1,
    time_limit=2.5,
)
def overtime(job: Job, params: OvertimeParams, reporter: Reporter) -> None:
    deadline = time.monotonic() + params.seconds
    while time.monotonic() < deadline:
        try:
            time.sleep(max(0.0, deadline - time.monotonic()))
        except TimeLimitExceeded:
            reporter.log("past the soft time limit")
            if not params.ignore_soft_limit:
                raise


class FloodParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    chunks: int = Field(default=1000, ge=0, le=100_000, description="How many chunks")
    size: int = Field(default=10, ge=1, le=100_000, description="Characters in each")


@job_kind("tests.flood", "Write output chunks as fast as it can", FloodParams)
def flood(job: Job, params: FloodParams, reporter: Reporter) -> dict[str, int]:
    for number in range(params.chunks):
        reporter.output(f"{number % 10}" * params.size)
    return {"chunks": params.chunks}
