"""Logging filters of the jobs domain (the settings' LOGGING uses them)."""

from __future__ import annotations

import logging

# Tasks beat sends every second: Celery's INFO lines for each run would fill the worker's log.
EVERY_SECOND = ("jobs.queue_positions", "queue-positions")


class EverySecondTasks(logging.Filter):
    """Drops Celery's INFO lines about the tasks beat sends every second (sent, received,
    succeeded); their warnings and errors still go through."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.INFO:
            return True
        message = record.getMessage()
        return not any(task in message for task in EVERY_SECOND)
