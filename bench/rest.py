"""The benchmarks' HTTP client: JSON calls to the REST API over keep-alive connections."""

from __future__ import annotations

import asyncio
import functools
import http.client
import json
import random
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlencode

HTTP_TIMEOUT = 30.0
HISTORY_PAGE = 200  # the most GET /api/rooms/{slug}/messages/ returns at once
ERRORS = (OSError, http.client.HTTPException)  # what a failed call raises


class Rest:
    """JSON calls to one or more servers (one picked at random per call), with a token or not.

    `call` blocks, on one keep-alive connection per thread and server; the async methods run
    it on a pool of `threads` threads, so the event loop goes on reading its sockets.
    """

    def __init__(self, ports: list[int], token: str | None = None, threads: int = 8) -> None:
        self.ports = ports
        self.token = token
        self.threads = threads
        self.local = threading.local()
        self.pool: ThreadPoolExecutor | None = None

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        token: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        """(HTTP status, the decoded JSON body: None if empty, its text if not JSON)."""
        conns: dict[int, http.client.HTTPConnection] = self.local.__dict__.setdefault("conns", {})
        port = random.choice(self.ports)  # noqa: S311 - load spreading, not crypto
        conn = conns.get(port)
        if conn is None:
            conn = conns[port] = http.client.HTTPConnection("127.0.0.1", port, timeout=HTTP_TIMEOUT)
        sent = {"Accept": "application/json", **(headers or {})}
        if token or self.token:
            sent["Authorization"] = f"Token {token or self.token}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            sent["Content-Type"] = "application/json"
        try:
            conn.request(method, path, body=data, headers=sent)
            response = conn.getresponse()
            raw = response.read()
        except ERRORS:
            # Not retried here: a POST the server may have taken must not be sent twice.
            conn.close()
            del conns[port]
            raise
        try:
            decoded = json.loads(raw) if raw else None
        except ValueError:
            decoded = raw[:200].decode(errors="replace")
        return response.status, decoded

    def close(self) -> None:
        """Close this thread's connections."""
        for conn in self.local.__dict__.pop("conns", {}).values():
            conn.close()

    def shutdown(self) -> None:
        """Stop the pool of the async calls, dropping the calls not started."""
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)

    async def acall(
        self,
        method: str,
        path: str,
        body: Any = None,
        token: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        """`call` on the pool; raises what it raises (ERRORS)."""
        if self.pool is None:
            self.pool = ThreadPoolExecutor(self.threads, thread_name_prefix="rest")
        call = functools.partial(self.call, method, path, body, token, headers)
        return await asyncio.get_running_loop().run_in_executor(self.pool, call)

    async def retrying(
        self,
        method: str,
        path: str,
        body: Any = None,
        token: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        """A call retried on connection errors, 5xx and non-JSON answers, up to 10 times.

        For reads and for writes with an idempotency key only.
        """
        for attempt in range(10):
            try:
                status, data = await self.acall(method, path, body, token, headers)
                if status < 500 and not isinstance(data, str):
                    return status, data
            except ERRORS:
                if attempt == 9:
                    raise
            await asyncio.sleep(0.2 * (attempt + 1))
        return status, data

    async def history(self, slug: str, after: int, upto: int | None) -> list[dict[str, Any]]:
        """The room's messages with after < seq (<= upto), page by page, retried on errors."""
        found: list[dict[str, Any]] = []
        while upto is None or after < upto:
            query = urlencode({"after": after, "limit": HISTORY_PAGE})
            status, page = await self.retrying("GET", f"/api/rooms/{slug}/messages/?{query}")
            if status != 200:
                raise RuntimeError(f"history of {slug}: HTTP {status} {page}")
            batch = [m for m in page["results"] if upto is None or m["seq"] <= upto]
            found.extend(batch)
            if len(page["results"]) < HISTORY_PAGE or not batch:
                break
            after = int(batch[-1]["seq"])
        return found
