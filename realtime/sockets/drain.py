"""Taking a server process out of service without a reconnect storm (a rolling restart).

On SIGTERM the process first drains: its sockets are closed with 1012 (service restart) one
at a time, spread evenly over SWITCHBOARD_DRAIN_SECONDS in a random order, so that their
clients reconnect to the other processes a few at a time and resume with `since`; a socket
that opens meanwhile is closed with 1012 at once; readiness answers 503. Then the server's own
SIGTERM handling runs (uvicorn's or Daphne's): it stops listening and lets the requests in
flight finish. A second SIGTERM skips what is left of the drain.

The handler is installed when the first socket opens, from the event loop's thread, after the
server installed its own (which it then calls): installed at import, the server would replace it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import signal
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from django.conf import settings

from realtime.kernel import lifecycle
from realtime.kernel.codes import CloseCode

logger = logging.getLogger(__name__)


class Closable(Protocol):
    async def close(self, code: int | bool | None = None, reason: str | None = None) -> None: ...


OPEN: set[Closable] = set()  # this process's open sockets
_installed: dict[str, Any] = {}


def install() -> None:
    """Drain on SIGTERM (once per process; only the main thread may set a signal handler)."""
    if _installed.get("pid") == os.getpid() or threading.current_thread() is not (
        threading.main_thread()
    ):
        return
    loop = asyncio.get_running_loop()
    previous = signal.getsignal(signal.SIGTERM)
    _installed.update(pid=os.getpid(), previous=previous)

    def on_sigterm(signum: int, frame: Any) -> None:
        if lifecycle.draining():  # asked again: stop now
            _hand_over(previous, signum, frame)
            return
        lifecycle.start_draining()
        loop.call_soon_threadsafe(lambda: asyncio.ensure_future(_drain(previous, signum, frame)))

    signal.signal(signal.SIGTERM, on_sigterm)


async def _drain(previous: Any, signum: int, frame: Any) -> None:
    sockets = list(OPEN)
    random.shuffle(sockets)
    window = settings.SWITCHBOARD_DRAIN_SECONDS
    logger.warning("draining: closing %d sockets over %.0f s", len(sockets), window)
    started = time.monotonic()
    for number, socket in enumerate(sockets, start=1):
        await asyncio.sleep(max(0.0, started + window * number / len(sockets) - time.monotonic()))
        if socket in OPEN:
            try:
                await socket.close(CloseCode.SERVICE_RESTART)
            except Exception:
                logger.debug("closing a socket while draining failed", exc_info=True)
    if not lifecycle.draining():
        return
    logger.warning("drained: stopping")
    _hand_over(previous, signum, frame)


def _hand_over(previous: Callable[[int, Any], Any] | int | None, signum: int, frame: Any) -> None:
    """What SIGTERM did before this module's handler: the server's own, or the default."""
    if callable(previous):
        previous(signum, frame)
    elif previous == signal.SIG_DFL or previous is None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
