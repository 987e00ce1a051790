"""Writes of the jobs domain."""

from importlib import import_module

from django.conf import settings


def sessions_clear_expired() -> None:
    """Delete expired login sessions through the configured session engine."""
    import_module(settings.SESSION_ENGINE).SessionStore.clear_expired()
