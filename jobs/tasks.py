"""Celery tasks: thin interfaces that take ids and call services."""

from celery import shared_task

from .services import sessions_clear_expired


@shared_task(name="jobs.sessions_clear_expired")
def clear_expired_sessions() -> None:
    """Delete expired login sessions (scheduled daily by beat; can be sent by hand)."""
    sessions_clear_expired()
