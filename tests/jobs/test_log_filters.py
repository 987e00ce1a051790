"""Beat's every-second task does not write a line per run to the worker's log."""

from __future__ import annotations

import logging

from jobs.log_filters import EverySecondTasks


def record(level: int, message: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("celery.app.trace", level, __file__, 1, message, args, None)


def test_celerys_info_lines_about_the_every_second_task_are_dropped_and_nothing_else():
    quiet = EverySecondTasks()

    assert not quiet.filter(
        record(logging.INFO, "Task %s[%s] received", "jobs.queue_positions", "1")
    )
    assert not quiet.filter(
        record(logging.INFO, "Scheduler: Sending due task queue-positions (jobs.queue_positions)")
    )
    assert quiet.filter(record(logging.INFO, "Task %s[%s] received", "jobs.run", "2"))
    assert quiet.filter(record(logging.ERROR, "Task jobs.queue_positions[3] raised: boom"))


def test_the_settings_put_it_on_celerys_loggers():
    for name in ("celery.beat", "celery.worker.strategy", "celery.app.trace"):
        assert any(isinstance(f, EverySecondTasks) for f in logging.getLogger(name).filters), name
