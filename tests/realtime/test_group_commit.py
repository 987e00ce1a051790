"""Posts sent at once over many sockets: batched into shared commits, with every room's `seq`
gapless and in commit order, on SQLite (one writer lane) and PostgreSQL (several in parallel).

Each run has a uvicorn process on a database of its own, so the rows it reads are exactly the
posts the test sent.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.databases import postgres_database, sql_runner
from tests.support.processes import BASE_DIR, child_env, uvicorn
from tests.support.ws import WsClient

SOCKETS = 12
POSTS_EACH = 15
ROOMS = ("north", "south")
RETRIED = 3  # posts each socket sends twice, as a client that did not hear back would


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'posts.sqlite3'}"
        return
    with postgres_database("switchboard_posts") as url:
        yield url


def manage(env: dict[str, str], *args: str) -> None:
    subprocess.run(
        [sys.executable, "manage.py", *args], cwd=BASE_DIR, env=env, check=True, capture_output=True
    )


async def post_all(client: WsClient, n: int) -> list[dict[str, Any]]:
    """Send this socket's posts without waiting between them, then collect every answer."""
    frames = []
    for i in range(POSTS_EACH):
        room = ROOMS[(n + i) % len(ROOMS)]
        frames.append({"room": room, "body": f"s{n} p{i}", "client_id": f"s{n}-{i}"})
    retries = frames[:RETRIED]
    for ref, frame in enumerate([*frames, *retries]):
        await client.send(type="chat.send", ref=ref, **frame)
    return [await answer(client, ref) for ref in range(len(frames) + len(retries))]


async def answer(client: WsClient, ref: int) -> dict[str, Any]:
    return await client.expect(lambda frame: frame.get("ref") == ref, timeout=30)


@pytest.mark.timeout(180)
async def test_simultaneous_posts_commit_in_seq_order_with_no_gap(database_url: str, log_dir: Path):
    # given: a server on a database of its own, with limits out of the way
    env = child_env(
        DATABASE_URL=database_url,
        CHAT_POST_RATE="100000/s",
        SWITCHBOARD_WS_RATE="100000",
        SWITCHBOARD_WS_BURST="100000",
        SWITCHBOARD_POST_LANES="4",
    )
    manage(env, "migrate", "--noinput", "-v0")
    for slug in ROOMS:
        manage(
            env, "shell", "-c", f"from chat.services import room_create; room_create(slug={slug!r})"
        )
    server, url = uvicorn(env, log_dir / "group-commit")
    try:
        clients = [await WsClient.open(url) for _ in range(SOCKETS)]

        # when: every socket sends all its posts, and a few again, at the same moment
        answers = await asyncio.gather(*(post_all(c, n) for n, c in enumerate(clients)))
        for client in clients:
            await client.close()
    finally:
        server.stop()

    # then: every post was taken once; each retry was answered with its first post
    for per_socket in answers:
        assert [a["type"] for a in per_socket] == ["chat.sent"] * (POSTS_EACH + RETRIED)
        first, again = per_socket[:RETRIED], per_socket[POSTS_EACH:]
        assert [(a["room"], a["seq"], a["id"]) for a in again] == [
            (a["room"], a["seq"], a["id"]) for a in first
        ]
        assert [a["duplicate"] for a in again] == [True] * RETRIED
        assert not any(a["duplicate"] for a in per_socket[:POSTS_EACH])
    # ...and in the database each room's seqs run 1..n with no gap, in the order the rows
    # were written (ids), with each client_id once
    rows = sql_runner(database_url)(
        "SELECT r.slug, m.seq, m.id, m.client_id FROM chat_message m "
        "JOIN chat_room r ON r.id = m.room_id ORDER BY r.slug, m.seq"
    )
    assert len(rows) == SOCKETS * POSTS_EACH
    assert len({client_id for *_, client_id in rows}) == len(rows)
    for slug in ROOMS:
        mine = [(seq, pk) for room, seq, pk, _ in rows if room == slug]
        assert [seq for seq, _ in mine] == list(range(1, len(mine) + 1))
        assert [pk for _, pk in mine] == sorted(pk for _, pk in mine)
    last_seqs = dict(sql_runner(database_url)("SELECT slug, last_seq FROM chat_room"))
    assert last_seqs == {slug: sum(1 for r in rows if r[0] == slug) for slug in ROOMS}
