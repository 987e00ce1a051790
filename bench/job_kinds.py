"""The benchmark's own job kind (bench.settings installs the `bench` app): output chunks that
carry the time they were written, so that the receiving client measures each one's latency."""

from __future__ import annotations

import time

from pydantic import BaseModel, ConfigDict, Field

from jobs import job_kind
from jobs.models import Job
from jobs.reporter import Reporter


class StampedParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    chunks_per_second: float = Field(default=200, gt=0, le=10_000)
    seconds: float = Field(default=10, gt=0, le=600)


@job_kind("bench.stream", "Write time-stamped output chunks at a steady rate", StampedParams)
def stamped_stream(job: Job, params: StampedParams, reporter: Reporter) -> dict[str, int]:
    """Like `demo.stream`, each chunk being the wall-clock time it was written, in ns."""
    total = int(params.chunks_per_second * params.seconds)
    pause = 1 / params.chunks_per_second
    started = time.monotonic()
    for written in range(total):
        time.sleep(max(0.0, started + written * pause - time.monotonic()))
        reporter.output(str(time.time_ns()))
    return {"chunks": total}
