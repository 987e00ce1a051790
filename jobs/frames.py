"""How a job looks to clients, declared once: its state (REST's body) and its `job.update` frame."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Protocol

from realtime.kernel import events
from realtime.kernel.names import JOB_OUTPUT, JOB_UPDATE, job_channel

from .models import Job

# What a job's state is made from: a `Job`'s fields, or a row of `job_list`.
JOB_STATE_COLUMNS = (
    "id",
    "kind",
    "status",
    "params",
    "progress_current",
    "progress_total",
    "progress_message",
    "result",
    "error",
    "created_at",
    "run_at",
    "started_at",
    "finished_at",
    "attempts",
    "max_attempts",
    "next_attempt_at",
    "seq",
    "cancel_requested",
    "log_lines",
    "output_chunks",
    "queue_position",
    "estimated_start_at",
)


class JobStateFields(Protocol):
    """A job's stored fields (a `Job`, or a row read with `JOB_STATE_COLUMNS`)."""

    @property
    def id(self) -> uuid.UUID: ...
    @property
    def kind(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def params(self) -> Any: ...
    @property
    def progress_current(self) -> int: ...
    @property
    def progress_total(self) -> int: ...
    @property
    def progress_message(self) -> str: ...
    @property
    def result(self) -> Any: ...
    @property
    def error(self) -> Any: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def run_at(self) -> datetime: ...
    @property
    def started_at(self) -> datetime | None: ...
    @property
    def finished_at(self) -> datetime | None: ...
    @property
    def attempts(self) -> int: ...
    @property
    def max_attempts(self) -> int: ...
    @property
    def next_attempt_at(self) -> datetime | None: ...
    @property
    def seq(self) -> int: ...
    @property
    def cancel_requested(self) -> bool: ...
    @property
    def log_lines(self) -> int: ...
    @property
    def output_chunks(self) -> int: ...
    @property
    def queue_position(self) -> int | None: ...
    @property
    def estimated_start_at(self) -> datetime | None: ...
    @property
    def request_id(self) -> str: ...


def job_state_model(job: JobStateFields) -> events.JobState:
    """The job's full state: what REST returns and `job.update` carries."""
    return events.JobState.model_validate(job_state_body(job))


def job_state_body(job: JobStateFields) -> dict[str, Any]:
    """The job's full state as REST returns it: `JobState`'s fields, JSON-ready, in order.

    Not validated here: the model's checks cost more than reading a page of jobs, and
    `job_state_model` validates this same dict, so the two cannot drift apart.
    """
    error = job.error
    return {
        "id": str(job.id),
        "kind": job.kind,
        "status": str(job.status),
        "params": job.params,
        "progress": {
            "current": job.progress_current,
            "total": job.progress_total,
            "message": job.progress_message,
        },
        "result": job.result,
        "error": {"type": error["type"], "message": error["message"]} if error else None,
        "created_at": job.created_at.isoformat(),
        "run_at": job.run_at.isoformat(),
        "started_at": _iso(job.started_at),
        "finished_at": _iso(job.finished_at),
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "next_attempt_at": _iso(job.next_attempt_at),
        "seq": job.seq,
        "cancel_requested": job.cancel_requested,
        "log_lines": job.log_lines,
        "output_chunks": job.output_chunks,
        "queue_position": job.queue_position,
        "estimated_start_at": _iso(job.estimated_start_at),
        "request_id": job.request_id or None,
    }


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def job_update_frame(state: events.JobState) -> events.JobUpdateFrame:
    """The `job.update` frame carrying a job's state, on the job's channel."""
    return events.JobUpdateFrame(channel=job_channel(state.id), job=state)


def job_update_event(job: Job) -> dict[str, Any]:
    """The channel-layer event announcing the job's current state."""
    frame = events.dump(job_update_frame(job_state_model(job)))
    return {"type": JOB_UPDATE, "job": str(job.id), "seq": job.seq, "frame": frame}


def job_output_event(job_id: str, first: int, chunks: list[str]) -> dict[str, Any]:
    """The channel-layer event carrying a job's new output chunks, `first` being the first's
    `seq`: a `JobOutputFrame`'s dict, made directly (a worker makes fifty of these a second
    per streaming job; the model's validation and dump cost more than the rest of the write).
    `tests/jobs/test_output.py` checks it against the model."""
    frame = {
        "type": "job.output",
        "channel": job_channel(job_id),
        "job_id": job_id,
        "chunks": [{"seq": seq, "data": data} for seq, data in enumerate(chunks, start=first)],
    }
    return {"type": JOB_OUTPUT, "job": job_id, "frame": frame}
