"""A rolling restart of the whole production topology under load, nothing lost or doubled.

Two uvicorn processes, two Celery workers and a beat, on PostgreSQL and RabbitMQ. Clients
follow a room over either server, posts and jobs keep coming over REST, and every process is
restarted in turn (SIGTERM, then started again once it has stopped). At the end every client
holds every message exactly once, and every job ran to `succeeded` in one attempt.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from config.redis_server import free_port
from tests.conftest import skip_or_fail
from tests.e2e.conftest import RABBITMQ_URL, rabbitmq_answers
from tests.support.databases import postgres_database
from tests.support.processes import (
    BASE_DIR,
    Service,
    celery_worker,
    child_env,
    http_json,
    manage_shell,
    new_user_token,
    uvicorn,
)

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.rabbitmq]

ROOM = "rolling"
FINAL = ("succeeded", "failed", "cancelled")
FOLLOWERS = 6


@dataclass
class Follower:
    """A client that follows the room over one server, and over the other when it goes away."""

    urls: list[str]
    first: int
    seqs: list[int] = field(default_factory=list)
    closes: list[int | None] = field(default_factory=list)

    async def run(self, stop: asyncio.Event) -> None:
        turn = self.first
        while not stop.is_set():
            url = self.urls[turn % len(self.urls)].replace("http://", "ws://") + "/ws/"
            turn += 1
            try:
                async with connect(url, open_timeout=5, max_size=2**22) as sock:
                    since = max(self.seqs, default=0)
                    await sock.send(
                        json.dumps({"type": "subscribe", "channel": f"room:{ROOM}", "since": since})
                    )
                    while not stop.is_set():
                        try:
                            raw = await asyncio.wait_for(sock.recv(), 0.2)
                        except TimeoutError:
                            continue
                        frame = json.loads(raw)
                        if frame.get("type") == "chat.message":
                            self.seqs.append(frame["seq"])
                    return
            except ConnectionClosed as closed:
                self.closes.append(closed.rcvd.code if closed.rcvd else None)
            except OSError:
                await asyncio.sleep(0.1)  # that server is restarting: the other one


@dataclass
class Load:
    """Posts and jobs over REST, each retried on the other server (same client_id or
    Idempotency-Key) when one cannot answer."""

    urls: list[str]
    token: str
    posted: set[int] = field(default_factory=set)
    jobs: set[str] = field(default_factory=set)
    turn: int = 0

    def call(self, path: str, body: dict[str, Any], headers: dict[str, str]) -> Any:
        for _ in range(40):
            url = self.urls[self.turn % len(self.urls)]
            self.turn += 1
            try:
                status, reply, _ = http_json(
                    f"{url}{path}", method="POST", body=body, headers=headers, timeout=5
                )
            except OSError:
                continue
            if status < 300:
                return reply
        raise AssertionError(f"no server took POST {path}")

    def post(self, n: int) -> None:
        body = {"body": f"m{n}", "client_id": str(uuid.uuid4())}
        reply = self.call(f"/api/rooms/{ROOM}/messages/", body, self.auth())
        self.posted.add(reply["seq"])

    def enqueue(self) -> None:
        body = {"kind": "demo.sleep", "params": {"steps": 2, "max_seconds": 0.2}}
        headers = {**self.auth(), "Idempotency-Key": str(uuid.uuid4())}
        self.jobs.add(self.call("/api/jobs/", body, headers)["id"])

    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Token {self.token}"}


def prepare(env: dict[str, str]) -> str:
    """Migrate, make the room, and a user's token."""
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v0"],
        cwd=BASE_DIR,
        env=env,
        check=True,
    )
    manage_shell(
        env, f"from chat.services import room_ensure; room_ensure(slug={ROOM!r}, title='r')"
    )
    return new_user_token(env, "roller")


@pytest.mark.timeout(300)
async def test_restarting_every_process_in_turn_loses_and_doubles_nothing(
    tmp_path: Path, log_dir: Path
):
    if not rabbitmq_answers():
        skip_or_fail(f"RabbitMQ does not answer at {RABBITMQ_URL} (set TEST_RABBITMQ_URL)")
    logs = log_dir / "rolling"
    with postgres_database("switchboard_rolling") as database_url:
        tag = uuid.uuid4().hex[:8]
        env = child_env(
            DATABASE_URL=database_url,
            CELERY_BROKER_URL=RABBITMQ_URL,
            CELERY_TASK_DEFAULT_QUEUE=f"rolling-{tag}",
            CHANNEL_LAYER_PREFIX=f"rolling{tag}",
            SWITCHBOARD_DRAIN_SECONDS="1",
            SWITCHBOARD_WEB_PROCESSES="2",
            BEAT_LOCK_SECONDS="3",
            CHAT_POST_RATE="100000/min",
            JOBS_ENQUEUE_RATE="100000/min",
            JOBS_MAX_ACTIVE_PER_USER="0",
        )
        token = await asyncio.to_thread(prepare, env)
        ports = [free_port(), free_port()]

        def start(name: str) -> Service:
            if name.startswith("web."):
                return uvicorn(env, logs, ports[int(name[-1]) - 1])[0]
            if name.startswith("worker."):
                return celery_worker(env, logs, name=f"rolling-{name[-1]}")
            argv = [sys.executable, "-m", "celery", "-A", "config", "beat", "-l", "warning"]
            argv += ["--schedule", str(tmp_path / "beat-schedule")]
            return Service("beat", argv, env, logs / "beat.log").start()

        names = ["web.1", "web.2", "worker.1", "worker.2", "beat"]
        running = {name: await asyncio.to_thread(start, name) for name in names}
        urls = [f"http://127.0.0.1:{port}" for port in ports]
        try:
            stop = asyncio.Event()
            followers = [Follower(urls, n) for n in range(FOLLOWERS)]
            following = [asyncio.ensure_future(f.run(stop)) for f in followers]
            load = Load(urls, token)
            loading = asyncio.Event()

            async def keep_loading() -> None:
                n = 0
                while not loading.is_set():
                    await asyncio.to_thread(load.post, n)
                    if n % 5 == 0:
                        await asyncio.to_thread(load.enqueue)
                    n += 1
                    await asyncio.sleep(0.03)

            loader = asyncio.ensure_future(keep_loading())
            await asyncio.sleep(1.0)
            for name in names:  # one at a time, each back before the next goes
                await asyncio.to_thread(running[name].stop, signal.SIGTERM, 30.0)
                running[name] = await asyncio.to_thread(start, name)
                await asyncio.sleep(1.0)
            loading.set()
            await loader

            def job_states() -> dict[str, Any]:
                return {
                    job: http_json(f"{urls[0]}/api/jobs/{job}/", headers=load.auth())[1]
                    for job in load.jobs
                }

            async def all_final() -> dict[str, Any]:
                for _ in range(300):
                    states = await asyncio.to_thread(job_states)
                    if all(s["status"] in FINAL for s in states.values()):
                        return states
                    await asyncio.sleep(0.2)
                raise AssertionError("jobs did not all finish")

            states = await all_final()
            await asyncio.sleep(2.0)  # the last messages reach every follower
            stop.set()
            await asyncio.gather(*following)
        finally:
            for service in running.values():
                service.stop()

    last = max(load.posted)
    assert load.posted == set(range(1, last + 1))
    for follower in followers:
        assert follower.seqs == list(range(1, last + 1)), follower.closes
    assert any(1012 in f.closes for f in followers)  # the drains moved clients over
    assert len(states) >= 10
    assert {s["status"] for s in states.values()} == {"succeeded"}
    assert {s["attempts"] for s in states.values()} == {1}
