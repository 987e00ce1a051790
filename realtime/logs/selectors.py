"""Reads of the configured log files: one by name, or all of them with their sizes.

Only the files named in `SWITCHBOARD_TAIL_FILES` can ever be read, and only by staff; no path
ever comes from a request. Someone who may not read logs is told a name does not exist, as for
a name that is not configured.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.exceptions import ImproperlyConfigured, PermissionDenied

from realtime.kernel.names import LOG_NAME_CHARS, log_channel

_NAME = re.compile(LOG_NAME_CHARS)

Viewer = AbstractBaseUser | AnonymousUser | None


@dataclass(frozen=True)
class LogFile:
    """A configured log file: the name it is followed by, and where it is."""

    name: str
    path: Path

    @property
    def channel(self) -> str:
        return log_channel(self.name)


@dataclass(frozen=True)
class LogFileInfo:
    """A configured log file as listed: its size in bytes, None while it does not exist."""

    name: str
    channel: str
    size: int | None


def parse_tail_files(value: str, base: Path) -> dict[str, Path]:
    """`name=path,name=path`: the files by name; a relative path is taken from `base`."""
    files: dict[str, Path] = {}
    for item in value.split(","):
        if not item.strip():
            continue
        name, sep, path = (part.strip() for part in item.partition("="))
        if not sep or not path:
            raise ImproperlyConfigured(f"SWITCHBOARD_TAIL_FILES: {item!r} is not name=path")
        if not _NAME.fullmatch(name):
            raise ImproperlyConfigured(
                f"SWITCHBOARD_TAIL_FILES: {name!r} is not a name ({LOG_NAME_CHARS})"
            )
        if name in files:
            raise ImproperlyConfigured(f"SWITCHBOARD_TAIL_FILES: {name!r} is named twice")
        files[name] = base / path  # an absolute path stays as it is
    return files


def log_files() -> dict[str, Path]:
    """Every configured log file, by name (`SWITCHBOARD_TAIL_FILES`)."""
    return parse_tail_files(settings.SWITCHBOARD_TAIL_FILES, settings.BASE_DIR)


def may_read_logs(viewer: Viewer) -> bool:
    """Whether `viewer` may read server logs: signed-in, active staff only."""
    return bool(
        viewer is not None
        and viewer.is_authenticated
        and viewer.is_active
        and getattr(viewer, "is_staff", False)
    )


def log_file_get(*, name: str, viewer: Viewer) -> LogFile | None:
    """The log file called `name` if `viewer` may read it; None otherwise, as if unknown."""
    if not may_read_logs(viewer):
        return None
    path = log_files().get(name)
    return None if path is None else LogFile(name, path)


def log_file_list(*, viewer: Viewer) -> list[LogFileInfo]:
    """Every configured log file with its size, by name; `PermissionDenied` unless staff."""
    if not may_read_logs(viewer):
        raise PermissionDenied("Only staff may read server logs.")
    return [
        LogFileInfo(name=name, channel=log_channel(name), size=_size(path))
        for name, path in sorted(log_files().items())
    ]


def _size(path: Path) -> int | None:
    try:
        return os.stat(path).st_size
    except OSError:  # not there yet (it is waited for), or not readable by this process
        return None
