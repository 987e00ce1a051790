"""`manage.py enqueue KIND [-p name=value ...] [--countdown S] [--follow]`: the tutorial's shell
session (`task.apply_async((), countdown=2)`) as one command, with a progress bar.

On a terminal `--follow` redraws one progress line; into a pipe or a file it writes a line
per change instead. It says so when no Celery worker consumes the queue: the job then waits for one.
"""

from __future__ import annotations

import json
import time
from typing import Any

from celery import current_app
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from kombu.exceptions import OperationalError

from jobs.errors import JobError
from jobs.models import FINISHED, Job
from jobs.services import job_enqueue

BAR_WIDTH = 30


def parse_param(text: str) -> tuple[str, Any]:
    name, sep, raw = text.partition("=")
    if not sep or not name:
        raise CommandError(f"-p takes name=value, not {text!r}")
    try:
        return name, json.loads(raw)
    except ValueError:
        return name, raw  # a bare word is a string


class Command(BaseCommand):
    help = "Enqueue a job (as USER) and optionally follow it until it ends."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("kind", help="a registered job kind, e.g. demo.sleep")
        parser.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE")
        parser.add_argument("--countdown", type=float, default=None, help="seconds to wait first")
        parser.add_argument("--user", default="demo", help="owner of the job (default: demo)")
        parser.add_argument("--follow", action="store_true", help="show progress until it ends")

    def handle(self, *args: Any, **options: Any) -> None:
        owner = get_user_model().objects.filter(username=options["user"]).first()
        if owner is None:
            raise CommandError(f"No user {options['user']!r} (manage.py seed_demo makes 'demo').")
        params = dict(parse_param(p) for p in options["param"])
        try:
            job, _ = job_enqueue(
                owner=owner, kind=options["kind"], params=params, countdown=options["countdown"]
            )
        except JobError as exc:
            detail = f"{exc.detail} {exc.fields}" if exc.fields else exc.detail
            raise CommandError(f"{exc.code}: {detail}") from exc
        self.stdout.write(f"{job.kind} {job.pk} {job.status}, runs at {job.run_at:%H:%M:%S}")
        queue = current_app.conf.task_default_queue
        if not self.worker_consumes(queue):
            broker = current_app.connection_for_write().as_uri()
            self.stderr.write(
                f"No Celery worker consumes queue {queue!r} on {broker}: the job waits until "
                "one starts (`make run` starts one)."
            )
        if options["follow"]:
            self.follow(job, redraw=self.stdout.isatty())

    @staticmethod
    def worker_consumes(queue: str) -> bool:
        """Whether a live worker consumes `queue` (any worker answering a ping may serve
        another queue on the same broker)."""
        try:
            replies = current_app.control.inspect(timeout=1.0).active_queues() or {}
        except (OSError, OperationalError):  # a dead broker: no worker can answer either
            return False
        return any(q.get("name") == queue for queues in replies.values() for q in queues)

    def follow(self, job: Job, *, redraw: bool) -> None:
        printed = 0
        shown = ""
        while True:
            job.refresh_from_db()
            for line in job.log.filter(number__gt=printed).order_by("number"):
                self.stdout.write(f"\r\x1b[K  {line.line}" if redraw else f"  {line.line}")
                printed = line.number
            bar = self.bar(job)
            if redraw:
                self.stdout.write(f"\r\x1b[K{bar}", ending="")
                self.stdout.flush()
            elif bar != shown:
                self.stdout.write(bar)
                self.stdout.flush()
            shown = bar
            if job.status in FINISHED:
                break
            time.sleep(0.2)
        if redraw:
            self.stdout.write("")
        if job.status != "succeeded":
            raise CommandError(f"job {job.status}: {job.error or ''}")
        self.stdout.write(f"result: {json.dumps(job.result)}")

    @staticmethod
    def bar(job: Job) -> str:
        total = job.progress_total or 1
        done = min(job.progress_current, total)
        filled = round(BAR_WIDTH * done / total)
        return (
            f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {done}/{job.progress_total} "
            f"{job.status} {job.progress_message}"
        )
