"""CPU per REST request in process: what each endpoint costs the app, no server and no network.

Run `.venv/bin/python -m bench.restcost` (see bench/README.md). It migrates a fresh SQLite
database in a temporary directory, starts a private Redis, seeds what `bench.restpath` seeds,
and calls the app's HTTP handler (`config.django_internals.PooledASGIHandler`, as the ASGI
servers do: the request's sync work on a pool thread, from an event loop) for each endpoint
in turn, interleaved over several rounds; it prints the best round's CPU per request (the
whole process's, event loop and pool thread) beside the bare view's. Where
`bench.restpath` says how fast the API is behind a server, this says where a change moved
the app's own cost, with less noise: a profiler (py-spy) can run it too.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.restpath import OVERRIDES

ENDPOINTS = ("bare", "user", "me", "rooms", "room", "history", "jobs", "job", "post", "enqueue")
WRITES = ("post", "enqueue")


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    body: Callable[[], bytes] | None = None


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.restcost", description=__doc__)
    parser.add_argument("--requests", type=int, default=2000, help="per endpoint, all rounds")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--auth", choices=("session", "token"), default="session")
    parser.add_argument("--endpoints", default=",".join(ENDPOINTS))
    args = parser.parse_args()
    wanted = [name for name in args.endpoints.split(",") if name]
    unknown = set(wanted) - set(ENDPOINTS)
    if unknown:
        parser.error(f"unknown endpoints: {', '.join(sorted(unknown))}")
    with tempfile.TemporaryDirectory(prefix="switchboard-restcost-") as root:
        from config.redis_server import PrivateRedis

        redis = PrivateRedis(Path(root) / "redis").start()
        try:
            os.environ.update(OVERRIDES)
            os.environ.update(
                DEBUG="0",
                REDIS_URL=redis.url,
                DATABASE_URL=f"sqlite:///{root}/bench.sqlite3",
                CELERY_BROKER_URL=redis.url,
            )
            import django

            django.setup(set_prefix=False)
            from django.core.management import call_command

            call_command("migrate", verbosity=0)
            prepared = _seeded(args.auth)
            best = asyncio.run(measure(prepared, wanted, args.requests, args.rounds))
        finally:
            redis.stop()
    bare = best.get("bare")
    print(f"CPU per request in process ({args.auth} auth, best of {args.rounds} rounds):")
    for name in wanted:
        share = f"{bare / best[name] * 100:4.0f}% of bare" if bare else ""
        print(f"  {name:8} {best[name]:7.0f} us  {share}")


async def measure(
    prepared: tuple[Any, dict[str, Call], dict[str, list[tuple[bytes, bytes]]]],
    wanted: list[str],
    requests: int,
    rounds: int,
) -> dict[str, float]:
    """The best round's CPU per request (µs) of each endpoint."""
    handler, calls, headers = prepared
    per_round = max(1, requests // rounds)

    async def call(endpoint: Call) -> int:
        body = endpoint.body() if endpoint.body else b""
        path, _, query = endpoint.path.partition("?")
        sent = list(headers["all"])
        if endpoint.method != "GET":
            sent += headers["write"] + [(b"content-length", str(len(body)).encode())]
        scope = {
            "type": "http",
            "method": endpoint.method,
            "path": path,
            "query_string": query.encode(),
            "headers": sent,
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
            "scheme": "http",
            "root_path": "",
        }
        response = await handler._in_pool(handler.respond, scope, io.BytesIO(body))
        return int(response.status_code)

    for name in wanted:  # warm up, and check that each answers
        for _ in range(20):
            status = await call(calls[name])
        if status >= 300:
            raise SystemExit(f"{name}: HTTP {status}")
    best: dict[str, float] = {}
    # Writes after reads, so that every read reads the seeded data.
    for group in ([n for n in wanted if n not in WRITES], [n for n in wanted if n in WRITES]):
        for _ in range(rounds):
            for name in group:
                started = time.process_time()
                for _ in range(per_round):
                    await call(calls[name])
                spent = (time.process_time() - started) / per_round * 1e6
                best[name] = min(best.get(name, spent), spent)
    return best


def _seeded(auth: str) -> tuple[Any, dict[str, Call], dict[str, list[tuple[bytes, bytes]]]]:
    """The handler, each endpoint's call, and the headers of a signed-in SPA (or script)."""
    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.auth.models import User
    from django.http import HttpRequest
    from django.middleware.csrf import get_token
    from django.utils.module_loading import import_string
    from rest_framework.authtoken.models import Token

    from bench.restpath import HISTORY, JOBS, ROOM
    from chat.services import Poster, message_post, room_ensure
    from config.django_internals import PooledASGIHandler
    from jobs.services import job_enqueue

    user = User.objects.create_user("bench-restcost", password=uuid.uuid4().hex)
    room = room_ensure(slug=ROOM, title=ROOM)
    for n in range(HISTORY):
        message_post(room=room, poster=Poster(user=user, address="127.0.0.1"), body=f"m {n}")
    sleep: dict[str, Any] = {"kind": "demo.sleep", "params": {"steps": 1, "max_seconds": 0}}
    job_ids = [str(job_enqueue(owner=user, countdown=86_000, **sleep)[0].pk) for _ in range(JOBS)]

    host = [(b"host", b"127.0.0.1:8000"), (b"accept", b"application/json")]
    write: list[tuple[bytes, bytes]] = [(b"content-type", b"application/json")]
    if auth == "token":
        key = Token.objects.create(user=user).key
        sent = [*host, (b"authorization", f"Token {key}".encode())]
    else:
        session = import_string(f"{settings.SESSION_ENGINE}.SessionStore")()
        session[SESSION_KEY] = str(user.pk)
        session[BACKEND_SESSION_KEY] = settings.AUTHENTICATION_BACKENDS[0]
        session[HASH_SESSION_KEY] = user.get_session_auth_hash()
        session.create()
        csrf = HttpRequest()
        token = get_token(csrf)  # masked, as a page sends it; the cookie holds the secret
        cookie = f"sessionid={session.session_key}; csrftoken={csrf.META['CSRF_COOKIE']}"
        sent = [*host, (b"cookie", cookie.encode())]
        write += [
            (b"x-csrftoken", token.encode()),
            (b"origin", b"http://127.0.0.1:8000"),
        ]

    def message() -> bytes:
        return json.dumps({"body": "x" * 100, "client_id": str(uuid.uuid4())}).encode()

    def job() -> bytes:  # due within JOBS_BROKER_MAX_DELAY: sent to the broker, as restpath's
        return json.dumps({**sleep, "countdown": 240}).encode()

    calls = {
        "bare": Call("GET", "/bench/bare/"),
        "user": Call("GET", "/bench/user/"),
        "me": Call("GET", "/api/auth/me/"),
        "rooms": Call("GET", "/api/rooms/"),
        "room": Call("GET", f"/api/rooms/{ROOM}/"),
        "history": Call("GET", f"/api/rooms/{ROOM}/messages/?limit=50"),
        "jobs": Call("GET", "/api/jobs/"),
        "job": Call("GET", f"/api/jobs/{job_ids[0]}/"),
        "post": Call("POST", f"/api/rooms/{ROOM}/messages/", message),
        "enqueue": Call("POST", "/api/jobs/", job),
    }
    return PooledASGIHandler(1), calls, {"all": sent, "write": write}


if __name__ == "__main__":
    main()
