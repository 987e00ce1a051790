"""Growing past one ASGI process: posts/s and deliveries/s with one uvicorn process, then two.

ROOMS rooms, each with CLIENTS subscribers spread over the server processes in turn and
SENDERS senders (on the processes in turn) posting `chat.send` with at most WINDOW posts
waiting for their `chat.sent`, for SECONDS. A socket's frames are handled one at a time, so
a sender has one post in the server at a time whatever its window: the senders, not the
window, set how much work waits. Counted: posts acknowledged a second, `chat.message` frames
received a second, the p50/p99 of a message's latency (the sender's clock to the receiver's),
and the CPU of each server process, Redis and this load generator, per delivery.

Run `.venv/bin/python -m bench.scaling` (bench/README.md says what the numbers mean). Nothing
is pinned: on a 2-core machine the load generator shares the cores with the servers, and its
own CPU is printed so that a run it bounded is seen as one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from bench.probe import CpuProbe, Usage
from bench.report import fmt, percentile, table
from bench.stack import (
    Environment,
    Server,
    keep_or_remove,
    log,
    parse_databases,
    print_failure,
    redis_ps,
    server_command,
    stop_on_signals,
)
from bench.ws import ws_connect
from config.redis_server import free_port

OVERRIDES = {
    "SWITCHBOARD_WS_RATE": "100000",
    "SWITCHBOARD_WS_BURST": "100000",
    "SWITCHBOARD_WS_MAX_PER_ADDRESS": "0",
    "CHAT_POST_RATE": "10000000/min",
    "SWITCHBOARD_ANONYMOUS_POSTING": "true",
}


@dataclass
class Tally:
    posts: int = 0
    deliveries: int = 0
    latencies_ms: list[float] = field(default_factory=list)


async def receive(url: str, room: str, tally: Tally, ready: asyncio.Event, until: float) -> None:
    async with ws_connect(url, 30.0) as sock:
        await sock.recv()  # hello
        await sock.send(json.dumps({"type": "subscribe", "channel": f"room:{room}"}))
        while json.loads(await sock.recv())["type"] != "subscribed":
            pass
        ready.set()
        while time.monotonic() < until:
            try:
                raw = await asyncio.wait_for(sock.recv(), until - time.monotonic())
            except TimeoutError:
                return
            frame = json.loads(raw)
            if frame["type"] == "chat.message":
                tally.deliveries += 1
                tally.latencies_ms.append((time.time_ns() - int(frame["body"])) / 1e6)


async def send(url: str, room: str, window: int, tally: Tally, start: float, until: float) -> None:
    async with ws_connect(url, 30.0) as sock:
        await sock.recv()  # hello
        waiting = 0
        await asyncio.sleep(max(0.0, start - time.monotonic()))
        while time.monotonic() < until:
            while waiting < window:
                body = str(time.time_ns())
                await sock.send(json.dumps({"type": "chat.send", "room": room, "body": body}))
                waiting += 1
            try:
                raw = await asyncio.wait_for(sock.recv(), max(0.01, until - time.monotonic()))
            except TimeoutError:
                return
            frame = json.loads(raw)
            if frame["type"] == "chat.sent":
                tally.posts += 1
                waiting -= 1
            elif frame["type"] == "error":
                waiting -= 1


async def measure(
    urls: list[str], rooms: list[str], args: argparse.Namespace, probe: CpuProbe
) -> tuple[Tally, Usage]:
    tally = Tally()
    start = time.monotonic() + 30  # at the latest; sooner once every socket is subscribed
    until = start + args.seconds + 60
    readies = []
    receivers = []
    for number in range(len(rooms) * args.clients):
        room = rooms[number % len(rooms)]
        ready = asyncio.Event()
        readies.append(ready)
        url = urls[number % len(urls)]
        receivers.append(asyncio.ensure_future(receive(url, room, tally, ready, until)))
    await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), 60)
    start = time.monotonic() + 0.5
    until = start + args.seconds
    senders = [
        asyncio.ensure_future(send(urls[n % len(urls)], room, args.window, tally, start, until))
        for n, room in enumerate(rooms * args.senders)
    ]
    await asyncio.sleep(max(0.0, start - time.monotonic()))
    probe.start()
    await asyncio.gather(*senders)
    usage = probe.stop()
    for task in receivers:
        task.cancel()
    await asyncio.gather(*receivers, return_exceptions=True)
    return tally, usage


def wait_live(ports: list[int], servers: list[Server], within: float) -> None:
    deadline = time.monotonic() + within
    for port in ports:
        while True:
            for server in servers:
                if not server.running:
                    raise RuntimeError(f"{server.name} exited:\n{server.log_tail()}")
            with contextlib.suppress(OSError):
                url = f"http://127.0.0.1:{port}/api/health/"
                with urllib.request.urlopen(url, timeout=2):
                    break
            if time.monotonic() > deadline:
                raise TimeoutError(f"port {port} did not answer within {within:g} s")
            time.sleep(0.3)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rooms", type=int, default=20)
    parser.add_argument("--clients", type=int, default=10, help="subscribers per room")
    parser.add_argument("--senders", type=int, default=4, help="senders per room")
    parser.add_argument("--window", type=int, default=4, help="posts in flight per sender")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--processes", default="1,2", help="server processes, one run each")
    parser.add_argument(
        "--db",
        default="postgres",
        help="postgres, or sqlite (refused with several processes unless DEBUG=1 is set)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, database)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stop_on_signals()
    root = Path(tempfile.mkdtemp(prefix="switchboard-bench-scaling-"))
    rooms = [f"scale-{n}" for n in range(args.rooms)]
    rows: list[list[str]] = []
    kept = args.keep
    servers: list[Server] = []
    try:
        with contextlib.ExitStack() as stack:
            (db,) = parse_databases(args.db)
            environment = Environment.prepare(
                root,
                django=True,
                db=db,
                settings="bench.settings",
                overrides=OVERRIDES,
                rooms=rooms,
            )
            stack.callback(environment.discard)
            for count in (int(n) for n in args.processes.split(",")):
                with environment.redis(f"scaling-{count}") as redis:
                    env = {**environment.env, "REDIS_URL": redis.url}
                    env["SWITCHBOARD_WEB_PROCESSES"] = str(count)
                    ports = [free_port() for _ in range(count)]
                    servers = [
                        Server(f"uvicorn-{n}", server_command("uvicorn", port), env,
                               root / f"uvicorn-{count}-{n}.log", port, None)
                        for n, port in enumerate(ports)
                    ]  # fmt: skip
                    with contextlib.ExitStack() as running:
                        for server in servers:
                            running.enter_context(server)
                        wait_live(ports, servers, 60)
                        log(f"{count} process(es): {args.rooms} rooms x {args.clients} clients, "
                            f"{args.senders} senders each")  # fmt: skip
                        probe = CpuProbe(redis=redis_ps(redis), **{s.name: s.ps() for s in servers})
                        urls = [s.url for s in servers]
                        tally, usage = asyncio.run(measure(urls, rooms, args, probe))
                    rows.append(row(count, tally, usage))
    except KeyboardInterrupt:
        kept = True
        return 130
    except (RuntimeError, TimeoutError, OSError) as error:
        print_failure(error, servers)
        kept = True
        return 1
    finally:
        keep_or_remove(root, kept)
    print()
    headers = ["processes", "posts/s", "deliveries/s", "p50 / p99 ms", "server CPU µs/delivery",
               "redis", "load generator", "others (PostgreSQL)"]  # fmt: skip
    print(table(headers, rows))
    print()
    print(f"note: {args.db}; nothing pinned: the load generator shares the cores with the servers.")
    return 0


def row(count: int, tally: Tally, usage: Usage) -> list[str]:
    seconds = usage.seconds
    servers = sum(cpu for name, cpu in usage.cpu.items() if name.startswith("uvicorn"))
    per_delivery = servers / tally.deliveries * 1e6 if tally.deliveries else None
    lat = tally.latencies_ms
    return [
        str(count),
        f"{tally.posts / seconds:,.0f}",
        f"{tally.deliveries / seconds:,.0f}",
        f"{fmt(percentile(lat, 0.5), '.1f')} / {fmt(percentile(lat, 0.99), '.1f')}",
        f"{fmt(per_delivery, '.1f')} ({servers / seconds:.2f} cores)",
        f"{usage.cpu.get('redis', 0.0) / seconds:.2f} cores",
        f"{usage.loadgen / seconds:.2f} cores",
        f"{usage.other / seconds:.2f} cores",
    ]


if __name__ == "__main__":
    sys.exit(main())
