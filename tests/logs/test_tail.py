"""Following a real file: appended lines only, bounded and decoded, across rotation and
truncation."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from realtime.logs.tail import STEP_BYTES, Line, LineSplitter, LogTail, NotARegularFile, Resume


def append(path: Path, data: bytes) -> None:
    with path.open("ab") as file:
        file.write(data)


def texts(lines: list[Line]) -> list[str]:
    return [line.text for line in lines]


@pytest.fixture
def log(tmp_path: Path) -> Path:
    return tmp_path / "app.log"


def test_only_lines_appended_after_the_start_are_read(log):
    # given: a file with history, and a line being written
    log.write_bytes(b"old 1\nold 2\nbeing wri")
    tail = LogTail(log, line_max=100)

    # when
    first = tail.step()
    append(log, b"tten\nnew\n")
    second = tail.step()

    # then: the line in progress is new (it ends after the start), the history is not
    assert first.lines == []
    assert texts(second.lines) == ["being written", "new"]
    assert [line.offset for line in second.lines] == [len(b"old 1\nold 2\nbeing written\n"), 30]
    assert tail.position == log.stat().st_size


def test_a_line_is_sent_only_once_its_newline_is_written(log):
    log.write_bytes(b"")
    tail = LogTail(log, line_max=100)
    tail.step()

    append(log, b"half")
    assert tail.step().lines == []
    append(log, b" and half\r\n")

    assert tail.step().lines == [Line("half and half", 15)]  # CRLF: the CR goes too


def test_a_long_line_is_cut_at_the_bound_and_marked(log):
    # given
    log.write_bytes(b"")
    tail = LogTail(log, line_max=10)
    tail.step()

    # when: a 25-byte line written in three pieces, then a short one
    for piece in (b"0123456", b"789abcdefghij", b"klmno\nshort\n"):
        append(log, piece)
        lines = tail.step().lines

    # then: its first 10 bytes, marked; the offset is past the whole line
    assert lines == [Line("0123456789", 26, cut=True), Line("short", 32)]


def test_bytes_that_are_not_utf8_are_replaced_and_a_cut_splits_no_character(log):
    log.write_bytes(b"")
    tail = LogTail(log, line_max=9)
    tail.step()

    append(log, b"caf\xc3\xa9 \xff\xfe!\n" + "ééééé".encode() + b"\n")

    assert tail.step().lines == [
        Line("café \ufffd\ufffd!", 10),
        Line("éééé", 21, cut=True),  # 9 of its 10 bytes end inside the fifth character
    ]


def test_a_file_that_does_not_exist_yet_is_read_from_its_start_once_it_does(log):
    tail = LogTail(log, line_max=100)
    assert tail.step().lines == []
    assert tail.resume(None, 1000) == Resume(0, [])

    log.write_bytes(b"first\nsecond\n")

    assert texts(tail.step().lines) == ["first", "second"]


def test_rotation_reads_the_old_file_to_its_end_then_the_new_one(log, tmp_path):
    # given
    log.write_bytes(b"before\n")
    tail = LogTail(log, line_max=100)
    tail.step()
    append(log, b"one\n")

    # when: renamed; the writer still writes to it, then reopens the path
    os.rename(log, tmp_path / "app.log.1")
    append(tmp_path / "app.log.1", b"two\nthree (unterminated)")
    log.write_bytes(b"")  # made by logrotate, empty: the writer has not reopened yet
    empty_new_file = tail.step()
    append(tmp_path / "app.log.1", b"")
    append(log, b"four\n")
    rotated = tail.step()
    append(log, b"five\n")
    after = tail.step()

    # then: every line once, in order; offsets start again in the new file
    assert texts(empty_new_file.lines) == ["one", "two"]
    assert empty_new_file.reset_at is None
    assert rotated.lines == [Line("three (unterminated)", 35), Line("four", 5)]
    assert rotated.reset_at == 1
    assert after.lines == [Line("five", 10)]
    assert after.reset_at is None


def test_a_path_renamed_away_is_followed_until_a_new_file_appears(log, tmp_path):
    log.write_bytes(b"")
    tail = LogTail(log, line_max=100)
    tail.step()

    os.rename(log, tmp_path / "app.log.1")
    append(tmp_path / "app.log.1", b"late\n")
    assert texts(tail.step().lines) == ["late"]
    log.write_bytes(b"new\n")

    step = tail.step()
    assert texts(step.lines) == ["new"]
    assert step.reset_at == 0


def test_truncation_starts_again_from_the_beginning(log):
    # given: lines read, then copytruncate empties the file in place
    log.write_bytes(b"")
    tail = LogTail(log, line_max=100)
    tail.step()
    append(log, b"a long first line\n")
    tail.step()

    # when
    with log.open("r+b") as file:
        file.truncate(0)
    append(log, b"x\n")
    step = tail.step()

    # then
    assert step.lines == [Line("x", 2)]
    assert step.reset_at == 0
    assert tail.position == 2


def test_a_busy_file_is_read_in_bounded_steps(log):
    log.write_bytes(b"")
    tail = LogTail(log, line_max=100)
    tail.step()
    line = b"x" * 99 + b"\n"
    count = 3 * STEP_BYTES // len(line)
    append(log, line * count)

    steps = [tail.step()]
    while steps[-1].more:
        steps.append(tail.step())

    assert len(steps) >= 3
    assert sum(len(step.lines) for step in steps) == count


def test_resume_replays_what_a_subscriber_missed(log):
    # given: a tail that has read three lines
    log.write_bytes(b"")
    tail = LogTail(log, line_max=100)
    tail.step()
    append(log, b"a\nbb\nccc\n")
    tail.step()

    # when / then
    assert tail.resume(None, 1000) == Resume(9, [])
    assert tail.resume(2, 1000) == Resume(2, [Line("bb", 5), Line("ccc", 9)])
    assert tail.resume(9, 1000) == Resume(9, [], skip_through=9)
    # a file shorter than `since` was rotated or truncated: all of it
    assert tail.resume(50, 1000) == Resume(0, [Line("a", 2), Line("bb", 5), Line("ccc", 9)])
    # too far behind: only the lines that start within the limit
    assert tail.resume(0, 4) == Resume(5, [Line("ccc", 9)])
    assert tail.resume(0, 7) == Resume(2, [Line("bb", 5), Line("ccc", 9)])


def test_resume_inside_a_line_being_written_skips_what_the_subscriber_has(log):
    log.write_bytes(b"")
    tail = LogTail(log, line_max=100)
    tail.step()
    append(log, b"one\ntwo\n")

    # another process read further than this one has yet: the subscriber has up to 8
    assert tail.resume(8, 1000) == Resume(8, [], skip_through=8)


def test_a_directory_is_not_followed(tmp_path):
    tail = LogTail(tmp_path, line_max=100)

    with pytest.raises(NotARegularFile):
        tail.step()


def test_closing_closes_the_file(log):
    log.write_bytes(b"x\n")
    tail = LogTail(log, line_max=100)
    tail.step()
    assert tail.fd is not None

    tail.close()

    assert tail.fd is None
    assert tail.step().lines == []


def test_skip_first_drops_the_fragment_before_the_first_newline():
    splitter = LineSplitter(100, 10, skip_first=True)

    assert splitter.feed(b"ment\nwhole\n") == [Line("whole", 21)]
