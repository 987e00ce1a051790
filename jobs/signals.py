"""Celery worker signals: each worker process that runs jobs starts its fork server of job
processes as it starts, from its main thread (`runner.fork_server_start`), then keeps the
garbage collector off what it loaded (`realtime.kernel.heap`)."""

from __future__ import annotations

from typing import Any

from celery.concurrency.prefork import TaskPool as PreforkPool
from celery.signals import worker_process_init, worker_ready

from realtime.kernel import heap


def connect_worker_signals() -> None:
    worker_ready.connect(_worker_ready, weak=False)
    worker_process_init.connect(_pool_process_ready, weak=False)


def _worker_ready(sender: Any, **kwargs: Any) -> None:
    """A worker whose pool runs tasks in this process (threads, solo): start it here.

    A prefork worker's tasks run in its pool's processes, which start their own: one started
    here would be inherited by the ones forked later, which cannot use another's.
    """
    if not isinstance(getattr(sender, "pool", None), PreforkPool):
        from .runner import fork_server_start

        fork_server_start()
    heap.freeze_loaded()


def _pool_process_ready(**kwargs: Any) -> None:
    from .runner import fork_server_start

    fork_server_start()
    heap.freeze_loaded()
