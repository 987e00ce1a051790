"""Which log files exist (only the configured ones), and that only staff may read them."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import ImproperlyConfigured, PermissionDenied

from realtime.logs.selectors import (
    LogFile,
    LogFileInfo,
    log_file_get,
    log_file_list,
    parse_tail_files,
)
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def configured(settings, tmp_path: Path) -> Path:
    """Two logs: `app`, written, and `worker`, not there yet."""
    (tmp_path / "app.log").write_bytes(b"12345\n")
    settings.SWITCHBOARD_TAIL_FILES = f"worker={tmp_path}/worker.log, app={tmp_path}/app.log"
    return tmp_path


def test_the_setting_names_files_by_name(tmp_path):
    assert parse_tail_files(" a=/var/log/a.log, b_2=logs/b.log,", tmp_path) == {
        "a": Path("/var/log/a.log"),
        "b_2": tmp_path / "logs" / "b.log",
    }
    assert parse_tail_files("", tmp_path) == {}


@pytest.mark.parametrize(
    "value", ["nopath", "a=", "=/x.log", "a b=/x.log", "../x=/x.log", "a=/x.log,a=/y.log"]
)
def test_a_malformed_setting_is_refused(tmp_path, value):
    with pytest.raises(ImproperlyConfigured):
        parse_tail_files(value, tmp_path)


def test_staff_get_a_configured_log(configured):
    staff = UserFactory.create(is_staff=True)

    assert log_file_get(name="app", viewer=staff) == LogFile("app", configured / "app.log")
    assert log_file_get(name="nope", viewer=staff) is None


def test_anyone_else_gets_nothing_as_for_an_unknown_name(configured):
    inactive = UserFactory.create(is_staff=True, is_active=False)
    for viewer in (UserFactory.create(), inactive, AnonymousUser(), None):
        assert log_file_get(name="app", viewer=viewer) is None


def test_staff_list_the_logs_with_their_sizes(configured):
    staff = UserFactory.create(is_staff=True)

    assert log_file_list(viewer=staff) == [
        LogFileInfo(name="app", channel="log:app", size=6),
        LogFileInfo(name="worker", channel="log:worker", size=None),
    ]


def test_anyone_else_may_not_list_them(configured):
    with pytest.raises(PermissionDenied):
        log_file_list(viewer=UserFactory.create())
