"""The fan-out ceiling: a minimal `websockets` broadcast server speaking the gateway's frames."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from datetime import UTC, datetime
from typing import Any

from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed

LOOPBACK = ("127.0.0.1", "::1", "localhost")
HELLO = json.dumps({"type": "hello", "protocol": 1, "user": None})
MAX_FRAME_BYTES = 64 * 1024


class Hub:
    """Subscribers per channel and a sequence counter per room, as the gateway's rooms have."""

    def __init__(self) -> None:
        self.channels: dict[str, set[ServerConnection]] = {}
        self.seqs: dict[str, int] = {}

    async def serve_socket(self, ws: ServerConnection) -> None:
        """Greet the socket, then answer subscribe / chat.send / ping until it closes."""
        subscribed: set[str] = set()
        try:
            await ws.send(HELLO)
            async for raw in ws:
                if isinstance(raw, str):
                    await self.handle(ws, raw, subscribed)
        except ConnectionClosed:
            pass
        finally:
            for channel in subscribed:
                self.channels.get(channel, set()).discard(ws)

    async def handle(self, ws: ServerConnection, raw: str, subscribed: set[str]) -> None:
        """One client frame; unknown or malformed frames get an error, like the gateway."""
        try:
            frame: Any = json.loads(raw)
        except ValueError:
            await _error(ws, "invalid_json", None)
            return
        if not isinstance(frame, dict):
            await _error(ws, "invalid_frame", None)
            return
        kind, ref = frame.get("type"), frame.get("ref")
        if kind == "subscribe" and isinstance(frame.get("channel"), str):
            channel = frame["channel"]
            self.channels.setdefault(channel, set()).add(ws)
            subscribed.add(channel)
            seq = self.seqs.get(channel, 0)
            await ws.send(
                json.dumps({"type": "subscribed", "channel": channel, "seq": seq, "ref": ref})
            )
        elif kind == "chat.send" and isinstance(frame.get("room"), str):
            room, client_id = frame["room"], frame.get("client_id")
            channel = f"room:{room}"
            seq = self.seqs[channel] = self.seqs.get(channel, 0) + 1
            # The gateway's `chat.message` and `chat.sent` fields, so frame sizes match too.
            message = {
                "type": "chat.message",
                "channel": channel,
                "room": room,
                "seq": seq,
                "id": seq,
                "author": None,
                "author_name": "anonymous",
                "body": frame.get("body", ""),
                "created_at": datetime.now(UTC).isoformat(),
                "client_id": client_id,
            }
            # Encoded once for every subscriber: that is what makes this the ceiling.
            broadcast(self.channels.get(channel, set()), json.dumps(message))
            sent = {"type": "chat.sent", "room": room, "seq": seq, "id": seq}
            sent |= {"client_id": client_id, "duplicate": False, "ref": ref}
            await ws.send(json.dumps(sent))
        elif kind == "ping":
            await ws.send(json.dumps({"type": "pong", "ref": ref}))
        else:
            await _error(ws, "unknown_type", ref)


async def _error(ws: ServerConnection, code: str, ref: Any) -> None:
    await ws.send(json.dumps({"type": "error", "code": code, "detail": code, "ref": ref}))


async def run(host: str, port: int, backlog: int) -> None:
    """Serve on host:port until SIGTERM or SIGINT."""
    hub = Hub()
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
    # No compression and no server pings: the gateway under test uses neither, so the
    # comparison is frame handling against frame handling.
    async with serve(
        hub.serve_socket,
        host,
        port,
        compression=None,
        ping_interval=None,
        max_size=MAX_FRAME_BYTES,
        backlog=backlog,
    ):
        print(f"ceiling listening on ws://{host}:{port}/", flush=True)
        await stop


def main(argv: list[str] | None = None) -> int:
    """Command line: `python -m bench.ceiling_server --port PORT [--host H] [--backlog N]`."""
    parser = argparse.ArgumentParser(prog="python -m bench.ceiling_server", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", choices=LOOPBACK)
    parser.add_argument("--port", type=int, required=True)
    # Same as uvicorn's default, so the "all connect at once" scenario is not limited here.
    parser.add_argument("--backlog", type=int, default=2048)
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run(args.host, args.port, args.backlog))
    return 0


if __name__ == "__main__":
    sys.exit(main())
