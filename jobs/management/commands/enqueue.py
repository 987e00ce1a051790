"""`manage.py enqueue KIND [-p name=value ...] [--countdown S] [--follow]`: the tutorial's shell
session (`task.apply_async((), countdown=2)`) as one command, with a progress bar."""

from __future__ import annotations

import json
import time
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

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
        if options["follow"]:
            self.follow(job)

    def follow(self, job: Job) -> None:
        printed = 0
        while True:
            job.refresh_from_db()
            for line in job.log.filter(number__gt=printed).order_by("number"):
                self.stdout.write(f"\r\x1b[K  {line.line}")
                printed = line.number
            self.stdout.write(f"\r\x1b[K{self.bar(job)}", ending="")
            self.stdout.flush()
            if job.status in FINISHED:
                break
            time.sleep(0.2)
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
