"""How a job looks to clients, declared once: its state (REST's body) and its `job.update` frame."""

from __future__ import annotations

from typing import Any

from realtime.kernel import events
from realtime.kernel.names import JOB_UPDATE, job_channel

from .models import Job


def job_state_model(job: Job) -> events.JobState:
    """The job's full state: what REST returns and `job.update` carries."""

    def iso(value: Any) -> str | None:
        return value.isoformat() if value is not None else None

    return events.JobState(
        id=str(job.id),
        kind=job.kind,
        status=events.JobStatus(job.status),
        params=job.params,
        progress=events.JobProgress(
            current=job.progress_current,
            total=job.progress_total,
            message=job.progress_message,
        ),
        result=job.result,
        error=events.JobError(**job.error) if job.error else None,
        created_at=job.created_at.isoformat(),
        run_at=job.run_at.isoformat(),
        started_at=iso(job.started_at),
        finished_at=iso(job.finished_at),
        attempts=job.attempts,
        seq=job.seq,
        cancel_requested=job.cancel_requested,
        log_lines=job.log_lines,
    )


def job_update_frame(state: events.JobState) -> events.JobUpdateFrame:
    """The `job.update` frame carrying a job's state, on the job's channel."""
    return events.JobUpdateFrame(channel=job_channel(state.id), job=state)


def job_update_event(job: Job) -> dict[str, Any]:
    """The channel-layer event announcing the job's current state."""
    frame = events.dump(job_update_frame(job_state_model(job)))
    return {"type": JOB_UPDATE, "job": str(job.id), "seq": job.seq, "frame": frame}
