"""asyncio's private handshake between a future and the Task that awaits it.

The only module that touches `_asyncio_future_blocking`. `await future` on a pending future
sets the future's `_asyncio_future_blocking` and yields the future; the Task driving the
coroutine checks the mark, clears it, and resumes the coroutine once the future is done.
The outbox drives a send coroutine by hand up to its first suspension, so the future comes
to the outbox instead of a Task; to hand the rest of the send to a Task it clears the mark
as a Task would, because CPython's futures refuse to be awaited again while it is set
("await wasn't used with future"). asyncio documents the attribute only as what makes an
object future-like (`asyncio.isfuture`).

Checked against CPython 3.11 (Python 3.12's eager tasks would make this unnecessary).
`check()` runs when the realtime app is ready.
"""

from __future__ import annotations

import asyncio
from typing import Any

from realtime.kernel.dependency_checks import Reliance

RELIANCE = Reliance("Python", "socket outbox (a send taken over by a Task)", "3.11")


def release_yielded_future(future: Any) -> None:
    """Let a future that a hand-driven coroutine yielded be awaited again, as a Task does."""
    future._asyncio_future_blocking = False


def check() -> None:
    """Raise `DependencyChanged` unless asyncio's futures and tasks still carry the mark."""
    for kind in ("Future", "Task"):
        cls = RELIANCE.attribute(asyncio, kind, "asyncio")
        RELIANCE.attribute(cls, "_asyncio_future_blocking", f"asyncio.{kind}")
