"""The session engine (`api/sessions.py`): Django's database sessions, read faster, the same."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.sessions.models import Session
from django.utils import timezone

from api.sessions import SessionStore

pytestmark = pytest.mark.django_db


def saved(**data: object) -> str:
    store = SessionStore()
    for key, value in data.items():
        store[key] = value
    store.save()
    assert store.session_key is not None
    return store.session_key


def test_each_load_gets_its_own_data() -> None:
    # given: a signed-in user's session, read once already
    key = saved(_auth_user_id="7", note="x")
    first = SessionStore(key).load()

    # when: a request changes what it loaded
    first["note"] = "changed"
    first["added"] = True

    # then: the next request reads the session as stored
    assert SessionStore(key).load() == {"_auth_user_id": "7", "note": "x"}


def test_values_that_change_in_place_are_not_shared() -> None:
    key = saved(items=[1, 2])
    SessionStore(key).load()["items"].append(3)
    assert SessionStore(key).load()["items"] == [1, 2]


def test_an_expired_or_deleted_session_is_empty_though_read_before() -> None:
    # given: two sessions, each read once
    expired, deleted = saved(_auth_user_id="7"), saved(_auth_user_id="8")
    assert SessionStore(expired).load()
    assert SessionStore(deleted).load()

    # when: one expires and the other is deleted (signed out)
    Session.objects.filter(pk=expired).update(expire_date=timezone.now() - timedelta(seconds=1))
    Session.objects.filter(pk=deleted).delete()

    # then: neither is read again
    for key in (expired, deleted):
        store = SessionStore(key)
        assert store.load() == {}
        assert store.session_key is None


def test_data_that_does_not_verify_is_empty() -> None:
    key = saved(_auth_user_id="7")
    Session.objects.filter(pk=key).update(session_data="tampered:data")
    assert SessionStore(key).load() == {}
