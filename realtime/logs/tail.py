"""Following one log file as `tail -F` does: the lines appended to it, each bounded in length.

A `LogTail` starts at the end of the file (at the start of a file that appears later) and goes
on across rotation (the file renamed and a new one made in its place) and truncation
(copytruncate), losing and repeating no line. A line is cut at `line_max` bytes and marked so;
bytes that are not UTF-8 become U+FFFD. Each line carries the byte offset just after it, from
which a reader resumes.

Its methods block on the file system: the log feed calls them in a thread, one at a time.
"""

from __future__ import annotations

import os
import stat
import threading
from dataclasses import dataclass, field
from pathlib import Path

READ_CHUNK = 64 * 1024
# At most this much is read per step: a file written faster is caught up with over several.
STEP_BYTES = 4 * READ_CHUNK

FileId = tuple[int, int]  # (st_dev, st_ino): which file a path names


class NotARegularFile(OSError):
    """The configured path names a directory, a pipe or a device: nothing to follow."""


@dataclass(frozen=True, slots=True)
class Line:
    """A line without its line ending; `offset` is the byte offset just after its newline."""

    text: str
    offset: int
    cut: bool = False


@dataclass(slots=True)
class Step:
    """The complete lines one step read, in order.

    From `reset_at` on (an index into `lines`), lines come from a new file (the old one was
    rotated) or from the file written again from its start (it was truncated): their offsets
    count from 0 again. `more`: the step stopped before the end of the file.
    """

    lines: list[Line] = field(default_factory=list)
    reset_at: int | None = None
    more: bool = False


@dataclass(frozen=True, slots=True)
class Resume:
    """Where a subscriber's lines start (`start`), the older ones it lacks (`lines`), and the
    offset up to which later lines are already its own (`skip_through`; None: none are)."""

    start: int
    lines: list[Line]
    skip_through: int | None = None


class LineSplitter:
    """Cuts a file's bytes, fed in order from offset `start`, into lines of at most `line_max`.

    The bytes of a line past `line_max` are dropped and the line is marked `cut`. With
    `skip_first`, everything up to the first newline is dropped: reading began inside a line.
    """

    def __init__(self, line_max: int, start: int = 0, *, skip_first: bool = False) -> None:
        self.line_max = line_max
        self.offset = start  # the bytes before it have been fed
        self.line_start = start  # where the line being fed began
        self.partial = bytearray()
        self.cut = False
        self.skipping = skip_first

    def feed(self, data: bytes) -> list[Line]:
        """The lines that `data` completes."""
        lines: list[Line] = []
        pos, size = 0, len(data)
        while pos < size:
            newline = data.find(b"\n", pos)
            end = size if newline < 0 else newline
            if not self.skipping:
                room = self.line_max - len(self.partial)
                if end - pos > room:
                    self.partial += data[pos : pos + room]
                    self.cut = True
                else:
                    self.partial += data[pos:end]
            if newline < 0:
                self.offset += size - pos
                break
            self.offset += newline + 1 - pos
            pos = newline + 1
            if self.skipping:
                self.skipping = False
            else:
                lines.append(self._line())
            self.line_start = self.offset
        return lines

    def flush(self) -> Line | None:
        """The line being fed, though no newline ended it: its file ended."""
        if self.skipping or self.offset == self.line_start:
            return None
        line = self._line()
        self.line_start = self.offset
        return line

    def _line(self) -> Line:
        raw, cut = bytes(self.partial), self.cut
        self.partial.clear()
        self.cut = False
        if cut:
            raw = raw[: _whole_characters(raw)]
        elif raw.endswith(b"\r"):
            raw = raw[:-1]
        return Line(raw.decode("utf-8", "replace"), self.offset, cut)


def _whole_characters(raw: bytes) -> int:
    """The length of `raw` without the UTF-8 character that a cut split at its end, if any."""
    end = len(raw)
    for back in range(1, min(4, end) + 1):
        byte = raw[end - back]
        if byte & 0xC0 != 0x80:  # not a continuation byte: where a character begins
            if byte & 0xE0 == 0xC0:
                length = 2
            elif byte & 0xF0 == 0xE0:
                length = 3
            elif byte & 0xF8 == 0xF0:
                length = 4
            else:
                length = 1
            return end - back if back < length else end
    return end


class LogTail:
    """One log file, followed: each `step` reads what was appended since the one before.

    The file stays open between steps, so a rotated file is read to its end before the new one
    is opened, and the new one is opened only once something was written to it (until then a
    writer may still be writing to the old one).
    """

    def __init__(self, path: Path, *, line_max: int) -> None:
        self.path = path
        self.line_max = line_max
        self.fd: int | None = None
        self.file_id: FileId | None = None
        self.lines = LineSplitter(line_max)
        self.first_open = True  # the file found at the start is read from its end
        self._lock = threading.Lock()
        self._closed = False

    @property
    def position(self) -> int:
        """Where the next complete line starts: every line before it has been read."""
        return self.lines.line_start

    def step(self) -> Step:
        """The lines appended since the last step."""
        try:
            with self._lock:
                return Step() if self._closed else self._step()
        finally:
            self._release_if_closed()

    def resume(self, since: int | None, limit: int) -> Resume:
        """Where a subscriber goes on from, given the offset after its last line, if any.

        Without `since`: from `position`, the lines appended from now on. A `since` past the end
        of the file means that the file was rotated or truncated since: from its start. More
        than `limit` bytes behind `position`: from the first line that starts within them.
        """
        with self._lock:
            end = self.position
            if since is None:
                return Resume(end, [])
            size = 0 if self.fd is None else os.fstat(self.fd).st_size
            if since > size:
                since = 0
            if since >= end:
                return Resume(since, [], skip_through=since)
            start = since
            if end - since > limit:
                start = end - limit - 1  # from just after the first newline at or after it
            data = self._read_range(start, end)
            if start != since:
                newline = data.find(b"\n")
                if newline < 0:
                    return Resume(end, [])
                start += newline + 1
                data = data[newline + 1 :]
            return Resume(start, LineSplitter(self.line_max, start).feed(data))

    def close(self) -> None:
        """Close the file: now, or when the step under way in a thread ends."""
        self._closed = True
        self._release_if_closed()

    def _release_if_closed(self) -> None:
        if self._closed and self._lock.acquire(blocking=False):
            try:
                if self.fd is not None:
                    os.close(self.fd)
                    self.fd = None
            finally:
                self._lock.release()

    def _step(self) -> Step:
        step = Step()
        if self.fd is None and not self._open_first():
            self.first_open = False  # it does not exist yet: once it does, all of it is new
            return step
        assert self.fd is not None
        if os.fstat(self.fd).st_size < self.lines.offset:  # truncated: written again from 0
            self._start_again(step)
        if self._read(step):
            return step
        replacement = self._replacement()
        if replacement is not None:  # rotated, and the old file is read to its end
            os.close(self.fd)
            self.fd, self.file_id, _ = replacement
            self._start_again(step)
            self._read(step)
        return step

    def _start_again(self, step: Step) -> None:
        """The file as read so far has ended: its unterminated last line, then offset 0."""
        line = self.lines.flush()
        if line is not None:
            step.lines.append(line)
        if step.reset_at is None:
            step.reset_at = len(step.lines)
        self.lines = LineSplitter(self.line_max)

    def _open_first(self) -> bool:
        opened = self._open()
        if opened is None:
            return False
        self.fd, self.file_id, size = opened
        self.lines = self._from_end(size) if self.first_open else LineSplitter(self.line_max)
        self.first_open = False
        return True

    def _open(self) -> tuple[int, FileId, int] | None:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        except FileNotFoundError:
            return None
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            os.close(fd)
            raise NotARegularFile(f"{self.path} is not a regular file")
        return fd, (info.st_dev, info.st_ino), info.st_size

    def _read_range(self, start: int, end: int) -> bytes:
        assert self.fd is not None
        chunks: list[bytes] = []
        while start < end:
            data = os.pread(self.fd, min(READ_CHUNK, end - start), start)
            if not data:
                break
            chunks.append(data)
            start += len(data)
        return b"".join(chunks)

    def _from_end(self, size: int) -> LineSplitter:
        """Start with the line being written at the end, or just after the last newline."""
        assert self.fd is not None
        window = min(size, self.line_max + 1)
        tail = os.pread(self.fd, window, size - window)
        newline = tail.rfind(b"\n")
        if newline >= 0:
            return LineSplitter(self.line_max, size - window + newline + 1)
        if size <= self.line_max:
            return LineSplitter(self.line_max, 0)
        # A line longer than `line_max` is being written: the rest of it is skipped.
        return LineSplitter(self.line_max, size, skip_first=True)

    def _read(self, step: Step) -> bool:
        """Read on into `step`; True if it stopped before the end of the file."""
        assert self.fd is not None
        budget = STEP_BYTES
        while budget > 0:
            data = os.pread(self.fd, min(READ_CHUNK, budget), self.lines.offset)
            if not data:
                return False
            step.lines += self.lines.feed(data)
            budget -= len(data)
        step.more = True
        return True

    def _replacement(self) -> tuple[int, FileId, int] | None:
        """The new file at the path once something was written to it (the old one rotated)."""
        try:
            info = os.stat(self.path)
        except FileNotFoundError:
            return None
        if (info.st_dev, info.st_ino) == self.file_id or info.st_size == 0:
            return None
        opened = self._open()
        if opened is not None and opened[1] == self.file_id:  # renamed back meanwhile
            os.close(opened[0])
            return None
        return opened
