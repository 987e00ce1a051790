"""Celery tasks run in a real worker process against the test database."""

from datetime import timedelta

import pytest
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.sessions.models import Session
from django.utils import timezone

from api.tasks import clear_expired_sessions
from tests.support.processes import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def test_worker_runs_the_session_cleanup_task(worker):
    # given: one expired and one live session
    expired, live = SessionStore(), SessionStore()
    expired.create()
    live.create()
    Session.objects.filter(session_key=expired.session_key).update(
        expire_date=timezone.now() - timedelta(days=1)
    )

    # when
    clear_expired_sessions.delay()

    # then
    wait_until(lambda: not Session.objects.filter(session_key=expired.session_key).exists())
    assert Session.objects.filter(session_key=live.session_key).exists()
    assert "auth.sessions_clear_expired" in worker.log()
