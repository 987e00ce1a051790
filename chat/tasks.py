"""Celery tasks of the chat domain: housekeeping."""

from __future__ import annotations

import time

from celery import shared_task
from django.conf import settings

from realtime.kernel.ratelimit import parse_rate

from .models import PostingBudget


@shared_task(name="chat.budgets_clear_expired")
def clear_expired_budgets() -> int:
    """Delete posting budgets last spent two periods ago or more (beat, every hour): they
    count nothing any more, and every anonymous address that ever posted has one."""
    _, period = parse_rate(settings.CHAT_POST_RATE)
    current = int(time.time() // period)
    deleted, _ = PostingBudget.objects.filter(period_no__lt=current - 1).delete()
    return deleted
