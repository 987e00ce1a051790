"""Django's SQLite backend, except that commits never checkpoint the WAL themselves.

By default the commit that takes SQLite's write-ahead log past 1,000 pages copies the log
into the database file and syncs it before it returns. Posting a chat message writes about
eight pages, so one post in about 130 waited 14-22 ms here for that, on the database thread
every socket of the process queues for. Connections made here turn that off
(`wal_autocheckpoint=0`), and a thread of the process checkpoints instead, in PASSIVE mode,
which never waits for readers or writers (RESTART, which does, only once the log has grown
past RESTART_BYTES): what SQLite's documentation suggests for applications that must keep
checkpoints out of their transactions (https://www.sqlite.org/wal.html,
"Application-Initiated Checkpoints").
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from typing import Any

from django.db.backends.sqlite3 import base

logger = logging.getLogger(__name__)

# Seconds between checkpoints. One with nothing new in the log costs microseconds; one with
# new frames syncs the database file, from this thread, while the others go on.
CHECKPOINT_INTERVAL = 1.0
# A PASSIVE checkpoint copies what it can but leaves the log as long as it was when writers
# never pause (SQLite starts it afresh only at a write that finds it all copied). Past this
# size the checkpointer makes writers wait, briefly, for a RESTART checkpoint instead.
RESTART_BYTES = 16 * 1024 * 1024


class DatabaseWrapper(base.DatabaseWrapper):
    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        connection = super().get_new_connection(conn_params)
        database = str(conn_params["database"])
        if not self.is_in_memory_db():
            connection.execute("PRAGMA wal_autocheckpoint=0")
            Checkpointer.ensure(database)
        return connection


class Checkpointer:
    """One thread per database file and process, checkpointing that file's log."""

    _running: dict[str, Checkpointer] = {}
    _pid = 0
    _lock = threading.Lock()

    @classmethod
    def ensure(cls, path: str) -> None:
        with cls._lock:
            if cls._pid != os.getpid():  # none yet, or inherited across a fork: start afresh
                cls._running = {}
                cls._pid = os.getpid()
            if path not in cls._running:
                cls._running[path] = cls(path)

    def __init__(self, path: str) -> None:
        self.path = path
        thread = threading.Thread(target=self._run, name="sqlite-checkpoint", daemon=True)
        thread.start()

    def _run(self) -> None:
        connection = sqlite3.connect(
            self.path, timeout=20, isolation_level=None, check_same_thread=False
        )
        log = f"{self.path}-wal"
        try:
            while os.path.exists(self.path):  # a test's throwaway database may be deleted
                time.sleep(CHECKPOINT_INTERVAL)
                try:
                    mode = "RESTART" if _size(log) > RESTART_BYTES else "PASSIVE"
                    connection.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
                except sqlite3.Error:
                    logger.warning("checkpoint of %s failed", self.path, exc_info=True)
        finally:
            connection.close()
            with self._lock:
                if self._running.get(self.path) is self:
                    del self._running[self.path]


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0
