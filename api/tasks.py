"""Celery tasks of the REST interface's sign-in: housekeeping of login sessions."""

from __future__ import annotations

from importlib import import_module

from celery import shared_task
from django.conf import settings


@shared_task(name="auth.sessions_clear_expired")
def clear_expired_sessions() -> None:
    """Delete expired login sessions through the configured session engine (beat, every 6 h)."""
    import_module(settings.SESSION_ENGINE).SessionStore.clear_expired()
