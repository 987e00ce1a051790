"""What every process checks of its settings before it serves (`check_or_exit`).

One process of each kind on one machine runs on anything. Several ASGI processes, or several
hosts, need what they share to be shared: one database, one Redis for the channel layer (a
message posted through one process reaches sockets held by the others only through it), one
broker. A launcher says how many there are: SWITCHBOARD_WEB_PROCESSES (ASGI processes) and
SWITCHBOARD_HOSTS (machines); `make prod` sets the first. A combination that would split the
stack into parts that do not see each other is refused with a message saying what to set.
"""

from __future__ import annotations

import sys
from urllib.parse import urlsplit

from django.conf import settings

LOOPBACK = {"127.0.0.1", "localhost", "::1", ""}


def problems() -> list[str]:
    """What is unsafe in this process's settings for the topology it is told of."""
    web = settings.SWITCHBOARD_WEB_PROCESSES
    hosts = settings.SWITCHBOARD_HOSTS
    found: list[str] = []
    if hosts > 1 and settings.SQLITE:
        found.append(
            f"SWITCHBOARD_HOSTS={hosts} with SQLite: each host would write a database file of its "
            "own. Set DATABASE_URL to a PostgreSQL server they all reach."
        )
    servers = [("REDIS_URL", settings.REDIS_URL), ("CELERY_BROKER_URL", settings.CELERY_BROKER_URL)]
    servers += [("CHANNEL_LAYER_HOSTS", url) for url in settings.CHANNEL_LAYER_HOSTS]
    for name, url in servers:
        if hosts > 1 and _on_this_host(url):
            found.append(
                f"SWITCHBOARD_HOSTS={hosts} with {name}={url}, a server on this host only: the "
                "other hosts would use their own, and miss this one's messages. Point every "
                f"host's {name} at one shared server."
            )
    if web > 1 and settings.SQLITE and not settings.DEBUG:
        found.append(
            f"SWITCHBOARD_WEB_PROCESSES={web} with SQLite in production: one write lock for "
            "every process. Set DATABASE_URL to PostgreSQL."
        )
    return found


def _on_this_host(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("unix", "redis+socket") or (parts.hostname or "") in LOOPBACK


def check_or_exit(role: str) -> None:
    """Stop this process, saying why, if its settings are unsafe for the topology."""
    found = problems()
    if found:
        lines = [f"switchboard {role}: refusing to start:", *(f"  - {p}" for p in found)]
        sys.stderr.write("\n".join(lines) + "\n")
        raise SystemExit(2)
