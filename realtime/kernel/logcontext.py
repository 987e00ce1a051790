"""What a log line is about: the request, user, job and socket it was written for.

Each is a context variable, set where that work starts (`bound`): a REST request by
`api.request_id.RequestIdMiddleware`, a socket by its consumer, a job's attempt by the worker
and by the job's own process. `ContextFilter` puts them on every log record, and with
`LOG_FORMAT=json` each line is one JSON object (`JsonFormatter`) carrying them as fields. A
request's id (its `X-Request-ID`, or one made for it) is stored with a job it enqueues, so it
follows the job into the worker, its log lines there and its `job.update` frames.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from collections.abc import Iterator
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
user_id: ContextVar[int | None] = ContextVar("user_id", default=None)
job_id: ContextVar[str | None] = ContextVar("job_id", default=None)
conn_id: ContextVar[str | None] = ContextVar("conn_id", default=None)
FIELDS: dict[str, ContextVar[Any]] = {
    "request_id": request_id,
    "user_id": user_id,
    "job_id": job_id,
    "conn_id": conn_id,
}

# What a client may send as its own request id: short, and nothing a log reader could trip on.
REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def valid_request_id(value: str | None) -> str | None:
    return value if value is not None and REQUEST_ID.fullmatch(value) else None


@contextlib.contextmanager
def bound(**values: Any) -> Iterator[None]:
    """Set some of the fields for the block (the others stay as they are)."""
    tokens = [(FIELDS[name], FIELDS[name].set(value)) for name, value in values.items()]
    try:
        yield
    finally:
        for variable, token in reversed(tokens):
            variable.reset(token)


def bind(**values: Any) -> None:
    """Set fields for the rest of this context (a socket's task, a job's process)."""
    for name, value in values.items():
        FIELDS[name].set(value)


class ContextFilter(logging.Filter):
    """Puts the fields on every record (None where unset), for any formatter to use."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, variable in FIELDS.items():
            if not hasattr(record, name):
                setattr(record, name, variable.get())
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the fields that are set, and
    the traceback (`exc`) of an exception logged with one."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)
