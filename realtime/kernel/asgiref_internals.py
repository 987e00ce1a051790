"""asgiref's per-thread record of the event loop a `sync_to_async` call came from.

The only module that reads asgiref's private names. `sync_to_async` runs sync code in a
worker thread, and before calling it `SyncToAsync.thread_handler` records in that thread's
`SyncToAsync.threadlocal` the calling event loop (`main_event_loop`) and the process
(`main_event_loop_pid`); asgiref's own `async_to_sync` reads them back to run a coroutine on
that loop. The publisher (`broadcast.publish_now`) reads the same two attributes to hand an
event to the loop whose database call committed it, so that the database thread never waits
on Redis. asgiref has no public way to ask which loop called.

Checked against asgiref 3.13. `check()` runs when the realtime app is ready.
"""

from __future__ import annotations

import asyncio
import os
import threading

from asgiref import sync as asgiref_sync

from .dependency_checks import Reliance

RELIANCE = Reliance("asgiref", "broadcast publisher (the loop of a sync_to_async call)", "3.13.x")


def calling_loop() -> asyncio.AbstractEventLoop | None:
    """The running event loop whose `sync_to_async` call this thread is running, if any."""
    local = asgiref_sync.SyncToAsync.threadlocal
    if getattr(local, "main_event_loop_pid", None) != os.getpid():
        return None  # not set in this thread, or inherited across a fork
    loop = getattr(local, "main_event_loop", None)
    return loop if isinstance(loop, asyncio.AbstractEventLoop) and loop.is_running() else None


def check() -> None:
    """Raise `DependencyChanged` unless asgiref still records the calling loop per thread."""
    sync_to_async = RELIANCE.attribute(asgiref_sync, "SyncToAsync", "asgiref.sync")
    where = "asgiref.sync.SyncToAsync"
    if not isinstance(RELIANCE.attribute(sync_to_async, "threadlocal", where), threading.local):
        raise RELIANCE.changed(f"{where}.threadlocal is no longer a threading.local")
    handler = RELIANCE.attribute(sync_to_async, "thread_handler", where)
    RELIANCE.uses(
        handler,
        ("threadlocal", "main_event_loop", "main_event_loop_pid"),
        f"{where}.thread_handler",
    )
