"""The ASGI server's own floor for a `chat.send`: the server with an app that only acks it.

Run `.venv/bin/python -m bench.asgi_floor` (see bench/README.md, "The post path's floor").
It serves `app` below with uvicorn as the production command runs it (`bench.stack`'s
flags), sends `chat.send` frames one after another over one socket, each waiting for its
`chat.sent`, and prints the server process's CPU per send. The app parses the frame and
answers with the ack the gateway sends: no validation, no database, no Redis, no fan-out.
Set beside `bench.fanout --post`'s figure for Switchboard, it says how much of the post
path's target (0.6 ms) is left for the app once the server has taken its share.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import subprocess
import sys
import time
from typing import Any

import psutil
from websockets.asyncio.client import connect

from bench.stack import server_command


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Accept a socket; answer each `chat.send` text frame with its `chat.sent`."""
    if scope["type"] != "websocket":
        return
    seq = 0
    while True:
        message = await receive()
        if message["type"] == "websocket.connect":
            await send({"type": "websocket.accept"})
        elif message["type"] == "websocket.receive" and message.get("text"):
            frame = json.loads(message["text"])
            seq += 1
            ack = {"type": "chat.sent", "room": frame.get("room"), "seq": seq, "id": seq}
            ack.update(client_id=frame.get("client_id"), duplicate=False, ref=frame.get("ref"))
            await send({"type": "websocket.send", "text": json.dumps(ack)})
        elif message["type"] == "websocket.disconnect":
            return


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.asgi_floor", description=__doc__)
    parser.add_argument("--sends", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3, help="the best round is printed")
    args = parser.parse_args()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    argv = server_command("uvicorn", port)
    argv[argv.index("config.asgi:application")] = "bench.asgi_floor:app"
    server = subprocess.Popen(argv)  # noqa: S603 - our own interpreter and arguments
    try:
        best = asyncio.run(_measure(port, psutil.Process(server.pid), args.sends, args.rounds))
    finally:
        server.terminate()
        server.wait(10)
    print(f"uvicorn, an app that only acks: {best:.0f} us of server CPU per chat.send")


async def _measure(port: int, server: psutil.Process, sends: int, rounds: int) -> float:
    deadline = time.monotonic() + 20
    while True:
        try:
            ws = await connect(f"ws://127.0.0.1:{port}/ws/")
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)
    best = float("inf")
    async with ws:
        await _sends(ws, 200)  # warm up
        for _ in range(rounds):
            before = server.cpu_times()
            await _sends(ws, sends)
            after = server.cpu_times()
            spent = (after.user - before.user) + (after.system - before.system)
            best = min(best, spent / sends * 1e6)
    return best


async def _sends(ws: Any, count: int) -> None:
    for n in range(count):
        frame = {"type": "chat.send", "room": "bench-post", "body": "x" * 100, "ref": n}
        await ws.send(json.dumps({**frame, "client_id": f"c-{n}"}))
        ack = json.loads(await ws.recv())
        if ack.get("ref") != n:
            sys.exit(f"unexpected answer {ack!r}")


if __name__ == "__main__":
    main()
