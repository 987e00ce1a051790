"""The job kinds Switchboard ships."""

from __future__ import annotations

import random
import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from .models import Job
from .registry import job_kind
from .reporter import Reporter


class SleepParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    steps: int = Field(default=10, ge=1, le=100, description="How many naps")
    max_seconds: float = Field(
        default=5.0, ge=0, le=10, description="Each nap lasts a random 0..max_seconds"
    )


@job_kind("demo.sleep", "Sleep some amount of time (the tutorial's task)", SleepParams)
def sleep_some_amount_of_time(job: Job, params: SleepParams, reporter: Reporter) -> dict[str, Any]:
    """The tutorial's `sleepSomeAmountOfTime`, with progress, a log line per step and bounds."""
    slept = 0.0
    for step in range(params.steps):
        seconds = round(random.uniform(0, params.max_seconds), 2)  # noqa: S311 - not crypto
        reporter.log(f"Going to sleep for {seconds} second")
        time.sleep(seconds)
        slept += seconds
        reporter.progress(step + 1, params.steps, f"Slept {step + 1} of {params.steps} times")
    return {"steps": params.steps, "slept_seconds": round(slept, 2)}
