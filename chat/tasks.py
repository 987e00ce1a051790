"""Celery tasks of the chat domain: housekeeping."""

from __future__ import annotations

import time

from celery import shared_task
from django.conf import settings

from realtime.kernel.ratelimit import parse_rate

from .models import PostingBudget
from .services import read_flush, room_states_announce


@shared_task(name="chat.budgets_clear_expired")
def clear_expired_budgets() -> int:
    """Delete posting budgets last spent two periods ago or more (beat, every hour): they
    count nothing any more, and every anonymous address that ever posted has one."""
    _, period = parse_rate(settings.CHAT_POST_RATE)
    current = int(time.time() // period)
    deleted, _ = PostingBudget.objects.filter(period_no__lt=current - 1).delete()
    return deleted


@shared_task(name="chat.read_flush")
def flush_read(room_id: int, user_id: int) -> int | None:
    """Write a member's last read position held back by the one-write-a-window rule."""
    return read_flush(room_id=room_id, user_id=user_id)


@shared_task(name="chat.room_states_announce")
def announce_room_states(room_id: int, user_ids: list[int] | None, paced: bool) -> int:
    """Tell a room's members (`rooms:mine`) how they see it now."""
    return room_states_announce(room_id=room_id, user_ids=user_ids, paced=paced)
