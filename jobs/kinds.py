"""The job kinds Switchboard ships: the tutorial's demo, a streaming demo, and a room's history
export."""

from __future__ import annotations

import csv
import io
import json
import random
import tempfile
import time
from typing import Any, Literal

from django.core.files.base import File
from django.core.files.storage import default_storage
from pydantic import BaseModel, ConfigDict, Field

from chat.selectors import messages_between, room_get
from realtime.kernel.names import ROOM_SLUG_PATTERN

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


DEMO_TEXT = (
    "Switchboard streams what a job writes as it writes it: each word of this text is a chunk, "
    "sent to the job's subscribers within a few tens of milliseconds, several at once when they "
    "come fast, stored so that a client that reconnects asks for what it missed and gets each "
    "chunk once."
)


class StreamParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(default=DEMO_TEXT, min_length=1, max_length=10_000, description="The text")
    words_per_second: float = Field(
        default=10, gt=0, le=1000, description="How fast it is written, word by word"
    )
    repeat: int = Field(default=1, ge=1, le=100, description="How many times the text is written")


@job_kind("demo.stream", "Write a text word by word to the job's output", StreamParams)
def stream_text(job: Job, params: StreamParams, reporter: Reporter) -> dict[str, Any]:
    """Output a text a word at a time, like a model generating it, at a steady rate."""
    words = params.text.split(" ")
    total = len(words) * params.repeat
    pause = 1 / params.words_per_second
    started = time.monotonic()
    for written in range(total):
        # Kept to its rate over the whole run, not pause by pause (a late word is not made up
        # for by the next ones otherwise).
        time.sleep(max(0.0, started + written * pause - time.monotonic()))
        word = words[written % len(words)]
        last = written % len(words) == len(words) - 1
        reporter.output(word + ("\n" if last else " "))
        reporter.progress(written + 1, total, f"Wrote {written + 1} of {total} words")
    return {"words": total, "seconds": round(time.monotonic() - started, 2)}


class RoomExportParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    room: str = Field(pattern=ROOM_SLUG_PATTERN, description="The room's slug")
    format: Literal["jsonl", "csv"] = Field(default="jsonl", description="File format")


EXPORT_BATCH = 500


def export_path(job: Job, fmt: str) -> str:
    """Where an export's file lives in the default storage."""
    return f"exports/{job.pk}.{fmt}"


@job_kind("room.export", "Export a room's history to a file", RoomExportParams)
def room_export(job: Job, params: RoomExportParams, reporter: Reporter) -> dict[str, Any]:
    """Write every message of a room as it is now, in `seq` order, a batch at a time with
    progress; deleted messages are left out. Progress counts the room's `seq`s, which its
    edits and deletions take too, so it ends at the total however many messages there were."""
    # As its owner may read it now: a room they may not read is no room, to them.
    seen = room_get(slug=params.room, viewer=job.owner)
    if seen is None:
        raise LookupError(f"No room {params.room!r}.")
    room = seen.room
    upto = room.last_seq  # a snapshot: messages posted meanwhile are not part of this export
    reporter.log(f"Exporting {room.slug} up to seq {upto} as {params.format}")
    done = 0
    # Written batch by batch to a temporary file: memory stays flat however big the room.
    with tempfile.TemporaryFile() as raw:
        out = io.TextIOWrapper(raw, encoding="utf-8", newline="")
        writer = csv.writer(out) if params.format == "csv" else None
        if writer is not None:
            writer.writerow(["seq", "created_at", "author", "body"])
        after = 0
        while after < upto:
            until = min(after + EXPORT_BATCH, upto)
            # Without deleted messages; their `seq`s are simply missing, like edits' and deletions'.
            found = messages_between(room_id=room.pk, after=after, upto=until, deleted=False)
            for message in found:
                row = {"seq": message.seq, "created_at": message.created_at.isoformat(),
                       "author": message.author_name, "body": message.body}  # fmt: skip
                if writer is not None:
                    writer.writerow(row.values())
                else:
                    out.write(json.dumps(row, ensure_ascii=False) + "\n")
                done += 1
            after = until
            reporter.progress(until, upto, f"Exported {done} messages, up to seq {until} of {upto}")
        out.detach()  # flushes; the bytes stay in `raw`
        path = export_path(job, params.format)
        default_storage.delete(path)
        raw.seek(0)
        default_storage.save(path, File(raw, name=path))
    size = default_storage.size(path)
    reporter.log(f"Wrote {size} bytes")
    return {
        "room": room.slug,
        "messages": done,
        "bytes": size,
        "format": params.format,
        "download_url": f"/api/jobs/{job.pk}/download/",
    }
