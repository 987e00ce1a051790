"""Output streams benchmark: N jobs each writing time-stamped chunks at a rate to its owner's
socket; what was lost or doubled, each chunk's latency, and the CPU per chunk.

Run `.venv/bin/python -m bench.jobstream` (20 jobs x 200 chunks/s for 10 s); bench/README.md
says what each number means. Everything it starts (Redis, the ASGI server, one Celery worker)
listens on loopback and is stopped at the end, on Ctrl-C and on SIGTERM.

A chunk's latency is from `reporter.output()` in the job's process (the chunk is the
wall-clock time then, `bench/job_kinds.py`) to the frame's arrival at the client: the
coalescing interval (JOBS_OUTPUT_INTERVAL), the insert and commit, the channel layer, the
server and the socket, on one machine's clock.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from bench.probe import CpuProbe, Usage
from bench.report import fmt, percentile, table, verdict
from bench.rest import Rest
from bench.stack import (
    LOADGEN_CORE,
    SERVER_CORE,
    Environment,
    Server,
    can_pin,
    celery_worker,
    died,
    keep_or_remove,
    log,
    parse_databases,
    print_failure,
    redis_ps,
    server_command,
    server_cores,
    stop_on_signals,
    wait_ready,
)
from bench.ws import ws_connect
from config.redis_server import free_port

TARGET_P99_MS = 50.0
OVERRIDES = {
    "SWITCHBOARD_WS_RATE": "10000",
    "SWITCHBOARD_WS_BURST": "10000",
    "JOBS_ENQUEUE_RATE": "100000/min",
    "JOBS_MAX_ACTIVE_PER_USER": "0",
}
CREATE_USER = (
    "from django.contrib.auth.models import User\n"
    "from rest_framework.authtoken.models import Token\n"
    "user = User.objects.create_user('bench')\n"
    "print(Token.objects.create(user=user).key)\n"
)
# Subscribed this long before the jobs start (their countdown).
COUNTDOWN = 3.0


@dataclass
class Stream:
    """What one job's socket received."""

    job_id: str
    seqs: list[int] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    frames: int = 0
    final: str = ""


async def follow(url: str, token: str, job_id: str, stream: Stream, until: float) -> None:
    """Subscribe to the job from its first chunk; record every chunk until it is final."""
    async with ws_connect(url, 10.0, {"Authorization": f"Token {token}"}) as sock:
        await sock.send(json.dumps({"type": "subscribe", "channel": f"job:{job_id}", "since": 0}))
        while time.monotonic() < until and not stream.final:
            try:
                raw = await asyncio.wait_for(sock.recv(), until - time.monotonic())
            except TimeoutError:
                return
            now = time.time_ns()
            frame = json.loads(raw)
            if frame["type"] == "job.output":
                stream.frames += 1
                for chunk in frame["chunks"]:
                    stream.seqs.append(chunk["seq"])
                    stream.latencies_ms.append((now - int(chunk["data"])) / 1e6)
            elif frame["type"] == "job.update" and frame["job"]["status"] in (
                "succeeded",
                "failed",
                "cancelled",
            ):
                stream.final = frame["job"]["status"]


@dataclass
class Run:
    streams: list[Stream]
    expected: int  # chunks per job
    usage: Usage | None = None

    def lost(self) -> int:
        return sum(
            self.expected - len(set(s.seqs) & set(range(1, self.expected + 1)))
            for s in self.streams
        )

    def doubled(self) -> int:
        return sum(n - 1 for s in self.streams for n in Counter(s.seqs).values() if n > 1)

    def steady_latencies(self, rate: float) -> list[float]:
        """Latencies of the chunks each job wrote after its first second and before its last:
        what a stream sees once twenty jobs are no longer starting or ending at once."""
        edge = int(rate)
        return [
            ms
            for s in self.streams
            for seq, ms in zip(s.seqs, s.latencies_ms, strict=True)
            if edge < seq <= self.expected - edge
        ]

    def out_of_order(self) -> int:
        return sum(
            1 for s in self.streams for a, b in zip(s.seqs, s.seqs[1:], strict=False) if b <= a
        )


async def measure(port: int, token: str, args: argparse.Namespace, probe: CpuProbe) -> Run:
    api = Rest([port], token)
    url = f"ws://127.0.0.1:{port}/ws/"
    body = {
        "kind": "bench.stream",
        "params": {"chunks_per_second": args.rate, "seconds": args.seconds},
        "countdown": COUNTDOWN,
    }
    replies = await asyncio.gather(
        *(api.acall("POST", "/api/jobs/", body) for _ in range(args.jobs))
    )
    job_ids = []
    for status, reply in replies:
        if status != 202:
            raise RuntimeError(f"enqueue answered {status}: {reply}")
        job_ids.append(reply["id"])
    streams = [Stream(job_id) for job_id in job_ids]
    until = time.monotonic() + COUNTDOWN + args.seconds + 60
    followers = [asyncio.ensure_future(follow(url, token, s.job_id, s, until)) for s in streams]
    await asyncio.sleep(COUNTDOWN - 0.5)
    probe.start()
    await asyncio.gather(*followers)
    run = Run(streams, int(args.rate * args.seconds))
    run.usage = probe.stop()
    api.shutdown()
    return run


def report(run: Run, args: argparse.Namespace, notes: list[str]) -> bool:
    latencies = [ms for s in run.streams for ms in s.latencies_ms]
    chunks = sum(len(s.seqs) for s in run.streams)
    frames = sum(s.frames for s in run.streams)
    p99 = percentile(latencies, 0.99)
    lost, doubled, disordered = run.lost(), run.doubled(), run.out_of_order()
    finals = Counter(s.final or "(none)" for s in run.streams)
    rows = [
        ["jobs", str(args.jobs), f"each {args.rate:g} chunks/s for {args.seconds:g} s"],
        ["chunks expected / received", f"{run.expected * args.jobs:,} / {chunks:,}", ""],
        ["lost / doubled / out of order", f"{lost} / {doubled} / {disordered}", ""],
        ["chunks per frame", fmt(chunks / frames if frames else None, ".1f"), f"{frames:,} frames"],
        ["latency p50 / p99 / max", " / ".join(
            fmt(percentile(latencies, q), ".1f") for q in (0.5, 0.99, 1.0)
        ) + " ms", "write in the job -> frame at the client"],
        ["latency p99, steady", fmt(percentile(run.steady_latencies(args.rate), 0.99), ".1f")
         + " ms", "without each job's first and last second"],
        ["final states", ", ".join(f"{k} {v}" for k, v in sorted(finals.items())), ""],
    ]  # fmt: skip
    if run.usage is not None and chunks:
        for name, seconds in sorted(run.usage.cpu.items()):
            rows.append([f"{name} CPU per chunk", f"{seconds / chunks * 1e6:.0f} µs",
                         f"{seconds:.1f} s over {run.usage.seconds:.1f} s"])  # fmt: skip
        rows.append(["other processes' CPU", f"{run.usage.other:.1f} s", "noise if large"])
    print()
    print(table(["", "measured", "note"], rows))
    ok_loss = lost == 0 and doubled == 0 and disordered == 0
    ok_p99 = p99 is not None and p99 <= TARGET_P99_MS
    print()
    print(f"{verdict(ok_loss)} nothing lost, doubled or out of order")
    print(f"{verdict(ok_p99)} p99 chunk latency {fmt(p99, '.1f')} ms <= {TARGET_P99_MS:g} ms")
    for note in notes:
        print(f"note: {note}")
    return ok_loss and ok_p99


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=20, help="jobs streaming at once")
    parser.add_argument("--rate", type=float, default=200, help="chunks a second per job")
    parser.add_argument("--seconds", type=float, default=10, help="how long each job streams")
    parser.add_argument("--server", default="uvicorn", choices=("uvicorn", "daphne"))
    parser.add_argument("--db", default="sqlite", help="sqlite or postgres")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, database)")
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to cores")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stop_on_signals()
    (db,) = parse_databases(args.db)
    pin = can_pin() and not args.no_pin
    if pin:
        os.sched_setaffinity(0, {LOADGEN_CORE})
    root = Path(tempfile.mkdtemp(prefix="switchboard-bench-stream-"))
    notes: list[str] = [
        f"{args.server} (pinned to the server's core: {pin}), one celery worker "
        f"(--pool threads --concurrency {args.jobs}: each job runs in a process of its own), "
        f"{db}; socket rate limits and job caps lifted: "
        + " ".join(f"{k}={v}" for k, v in OVERRIDES.items())
    ]
    servers: list[Server] = []
    ok = False
    kept = args.keep
    try:
        with contextlib.ExitStack() as stack:
            environment = Environment.prepare(
                root, django=False, db=db, settings="bench.settings", overrides=OVERRIDES
            )
            stack.callback(environment.discard)
            env = environment.env
            redis = stack.enter_context(environment.redis("stream", pin))
            env["REDIS_URL"] = redis.url
            log(f"migrating the {db} database, creating the user")
            environment.manage("migrate", "--noinput", "-v0")
            token = environment.manage("shell", "-c", CREATE_USER).strip().splitlines()[-1]
            port = free_port()
            logs_dir = root / "logs"
            logs_dir.mkdir()
            server = Server(
                args.server,
                server_command(args.server, port),
                env,
                logs_dir / "server.log",
                port,
                server_cores(pin),
            )
            # Anywhere: pinned as this process is, it would share the load generator's core.
            worker_cores = {SERVER_CORE, LOADGEN_CORE} if pin else None
            worker = celery_worker(env, logs_dir / "worker.log", "threads", args.jobs, worker_cores)
            servers = [server, worker]
            stack.enter_context(server)
            stack.enter_context(worker)
            probe = CpuProbe(server=server.ps(), worker=worker.ps(), redis=redis_ps(redis))

            async def run() -> Run:
                await wait_ready(port, servers, 120.0)
                log(f"streaming: {args.jobs} jobs x {args.rate:g} chunks/s x {args.seconds:g} s")
                return await measure(port, token, args, probe)

            result = asyncio.run(run())
            failures = died(servers)
            if failures:
                raise RuntimeError("; ".join(failures))
            ok = report(result, args, notes)
    except KeyboardInterrupt:
        print("interrupted: every process was stopped", file=sys.stderr)
        kept = True
        return 130
    except (RuntimeError, TimeoutError, OSError) as error:
        print_failure(error, servers)
        kept = True
    finally:
        keep_or_remove(root, kept)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
