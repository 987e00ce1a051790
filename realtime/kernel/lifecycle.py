"""Whether this process is being taken out of service (`realtime.sockets.drain`): readiness
answers 503 from then on, so that a load balancer sends it nothing new."""

from __future__ import annotations

_draining = False


def draining() -> bool:
    return _draining


def start_draining() -> None:
    global _draining
    _draining = True
