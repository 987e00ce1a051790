"""Writes of the chat domain."""

from django.contrib.auth.models import User

from .models import Room


def room_create(*, slug: str, title: str = "", created_by: User | None = None) -> Room:
    """Create a room after validating its slug and title."""
    room = Room(slug=slug, title=title or slug, created_by=created_by)
    room.full_clean()
    room.save()
    return room


def room_ensure(*, slug: str, title: str = "") -> Room:
    """The room with this slug, created if missing (demo data, idempotent)."""
    room = Room.objects.filter(slug=slug).first()
    return room if room is not None else room_create(slug=slug, title=title)
