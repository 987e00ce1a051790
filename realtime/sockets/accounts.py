"""Sockets per account: a cap on open connections, and closing them when credentials end.

Each open socket is an entry in a Redis sorted set per account (a user, or the client address
of an anonymous socket) scored by expiry, refreshed by its process like presence, so the cap
holds across server processes and a crashed process's sockets stop counting after the TTL.

Signing out (or a token being deleted) is announced to the account's group; every process
closes its sockets that were opened with that session or token (close code 4401). Only a
fingerprint of the credential travels, never the session key or token itself.
"""

from __future__ import annotations

import hashlib
import logging
import time
from typing import Any

from django.conf import settings
from django.contrib.auth.signals import user_logged_out
from django.db.models.signals import post_delete
from django.dispatch import receiver
from rest_framework.authtoken.models import Token

from realtime.kernel.broadcast import publish_on_commit
from realtime.kernel.names import ACCOUNT_REVOKED, account_group
from realtime.kernel.redis_pool import redis_client

logger = logging.getLogger(__name__)


def fingerprint(secret: str) -> str:
    """What identifies a session or token in events without revealing it."""
    return hashlib.sha256(secret.encode()).hexdigest()[:32]


def _key(account: str) -> str:
    return f"{settings.REDIS_KEY_PREFIX}:sockets:{account}"


def connection_cap(account: str) -> int:
    """Most open sockets for an account (`user:<id>` or `ip:<address>`); 0 is no cap."""
    if account.startswith("user:"):
        return int(settings.SWITCHBOARD_WS_MAX_PER_USER)
    return int(settings.SWITCHBOARD_WS_MAX_PER_ADDRESS)


async def admit(account: str, conn_id: str, cap: int) -> bool:
    """Count a new socket for `account`; False (and not counted) when that passes `cap`."""
    key, now = _key(account), time.time()
    async with redis_client().pipeline(transaction=True) as pipe:
        pipe.zremrangebyscore(key, "-inf", now)
        pipe.zadd(key, {conn_id: now + settings.SWITCHBOARD_PRESENCE_TTL})
        pipe.zcard(key)
        pipe.expire(key, int(settings.SWITCHBOARD_PRESENCE_TTL) + 1)
        _, _, count, _ = await pipe.execute()
    if count <= cap:
        return True
    await release(account, conn_id)
    return False


async def release(account: str, conn_id: str) -> None:
    await redis_client().zrem(_key(account), conn_id)


async def refresh(account: str, conn_ids: list[str]) -> None:
    """Keep this process's sockets counted (called with the presence refresh)."""
    if not conn_ids:  # its last socket left while the refresh was under way: nothing to keep
        return
    key = _key(account)
    async with redis_client().pipeline(transaction=False) as pipe:
        pipe.zadd(key, dict.fromkeys(conn_ids, time.time() + settings.SWITCHBOARD_PRESENCE_TTL))
        pipe.expire(key, int(settings.SWITCHBOARD_PRESENCE_TTL) + 1)
        await pipe.execute()


def revoke(user_id: int, *secrets: str) -> None:
    """Close, in every process, the user's sockets opened with any of these credentials."""
    publish_on_commit(
        account_group(user_id),
        {"type": ACCOUNT_REVOKED, "credentials": [fingerprint(secret) for secret in secrets]},
    )


@receiver(user_logged_out, dispatch_uid="realtime.accounts.logged_out")
def _on_logged_out(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    session = getattr(request, "session", None)
    session_key = getattr(session, "session_key", None)
    if user is not None and session_key:
        revoke(user.pk, session_key)


@receiver(post_delete, sender=Token, dispatch_uid="realtime.accounts.token_deleted")
def _on_token_deleted(sender: Any, instance: Token, **kwargs: Any) -> None:
    revoke(instance.user_id, instance.key)
