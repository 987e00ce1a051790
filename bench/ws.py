"""The benchmarks' WebSocket client settings."""

from __future__ import annotations

from typing import Any

from websockets.asyncio.client import connect


def ws_connect(url: str, timeout: float, headers: dict[str, str] | None = None) -> Any:
    """A client connection to `url`, without compression or pings (use as `async with`)."""
    # No compression (Daphne offers none; zlib would dominate both CPU and memory) and no
    # client pings (the measured CPU is the server's answer to our frames, not keep-alives).
    return connect(
        url,
        compression=None,
        ping_interval=None,
        open_timeout=timeout,
        close_timeout=2,
        max_queue=None,
        max_size=2**20,
        additional_headers=headers,
    )
