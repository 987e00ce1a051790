"""SQL counted on every thread's connection: socket requests query on the database thread."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.signals import connection_created

from realtime.sockets.database import on_database_thread
from realtime.sockets.posting import post_lanes


class QueryLog:
    """An `execute_wrapper` put on connections of any thread; records while `capture` runs.

    Django's own counters (`django_assert_num_queries`) see the test thread's connection only;
    a socket's handlers query on the sockets' database thread (`on_database_thread`), and a
    health check on a thread of its own. This log is put on each connection made while it
    is installed (`connection_created`) and on those open before (`watch_this_thread`,
    `watch_database_thread`).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._capturing = False
        self._watched: list[BaseDatabaseWrapper] = []
        self.statements: list[tuple[str, str]] = []  # (thread name, SQL)

    def __call__(
        self, execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any
    ) -> Any:
        with self._lock:
            if self._capturing:
                self.statements.append((threading.current_thread().name, sql))
        return execute(sql, params, many, context)

    def watch(self, wrapper: BaseDatabaseWrapper) -> None:
        with self._lock:
            if self not in wrapper.execute_wrappers:
                wrapper.execute_wrappers.append(self)
                self._watched.append(wrapper)

    def watch_this_thread(self) -> None:
        for wrapper in connections.all():
            self.watch(wrapper)

    async def watch_database_thread(self) -> None:
        """Watch the connections of the threads socket requests query on.

        A socket's reads run on the sockets' database thread (`realtime.sockets.database`);
        `chat.send` is written on the post lane (`realtime.sockets.posting`; one lane on SQLite).
        """
        await on_database_thread(self.watch_this_thread)()
        await post_lanes().call(self.watch_this_thread)

    def _connected(self, sender: Any, connection: BaseDatabaseWrapper, **kwargs: Any) -> None:
        self.watch(connection)

    def install(self) -> None:
        connection_created.connect(self._connected, weak=False, dispatch_uid=id(self))
        self.watch_this_thread()

    def uninstall(self) -> None:
        connection_created.disconnect(dispatch_uid=id(self))
        with self._lock:
            for wrapper in self._watched:
                if self in wrapper.execute_wrappers:
                    wrapper.execute_wrappers.remove(self)
            self._watched.clear()

    @contextmanager
    def capture(self) -> Iterator[list[tuple[str, str]]]:
        """The statements run, on any watched connection, inside the block."""
        with self._lock:
            start = len(self.statements)
            self._capturing = True
        captured: list[tuple[str, str]] = []
        try:
            yield captured
        finally:
            with self._lock:
                self._capturing = False
                captured.extend(self.statements[start:])


def describe(statements: list[tuple[str, str]]) -> str:
    """The statements, one a line, for an assertion's message."""
    return "\n".join(f"[{thread}] {sql}" for thread, sql in statements)
