"""PUBLISH for channels-redis's pub/sub layer over a connection of our own, pipelined.

The layer sends each `group_send` through redis-py's asyncio client, behind a per-host lock
that subscribing and unsubscribing also take. On a socket's post that was the largest single
cost: about a third of the server's CPU per `chat.send` (py-spy, one sender, 0 subscribers).
A loop's publisher writes every waiting event here instead: the PUBLISH commands of a round
in one write, their replies read together. Channel names and the serializer are the layer's
own, so its subscribers see the same messages.

Only for the layer this project configures by default: `RedisPubSubChannelLayer` on one
plain `redis://` host (no TLS, no Sentinel, no shards); anything else goes through the
layer's `group_send`. Like the layer, it is at most once: a failed round is logged by the
caller and its events are not sent again; receivers repair gaps from the database.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any
from urllib.parse import unquote, urlsplit

from channels_redis.pubsub import RedisPubSubChannelLayer

CLIENT_NAME = b"switchboard-publish"


class PubSubWire:
    """One event loop's connection for PUBLISH to one Redis host."""

    def __init__(self, layer: RedisPubSubChannelLayer, url: str) -> None:
        self.layer = layer
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 6379
        self.db = int(parts.path.lstrip("/") or 0)
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        self.prefix: str = layer._kwargs.get("prefix", "asgi")
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    @classmethod
    def for_layer(cls, layer: Any) -> PubSubWire | None:
        """A wire for `layer` when it is the pub/sub layer on one plain redis:// host."""
        if type(layer) is not RedisPubSubChannelLayer or layer._args:
            return None
        hosts = layer._kwargs.get("hosts") or []
        if len(hosts) != 1 or not isinstance(hosts[0], str):
            return None
        if not hosts[0].startswith("redis://"):
            return None
        return cls(layer, hosts[0])

    async def publish(self, messages: list[tuple[str, dict[str, Any]]]) -> None:
        """PUBLISH each (group, message) in order, in one write; raises if any failed."""
        if not self._open():
            await self._connect()  # first use, or Redis closed it (a restart) since
        assert self.reader is not None
        assert self.writer is not None
        serialize = self.layer.serialize
        self.writer.write(
            b"".join(
                _command(b"PUBLISH", f"{self.prefix}__group__{group}".encode(), serialize(msg))
                for group, msg in messages
            )
        )
        try:
            await self.writer.drain()
            for _ in messages:
                await self._reply()
        except BaseException:
            self.close()  # replies of this round may still be in flight: start clean
            raise

    def _open(self) -> bool:
        if self.reader is None or self.writer is None:
            return False
        return not (self.writer.is_closing() or self.reader.at_eof())

    async def _connect(self) -> None:
        self.close()
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        setup: list[bytes] = []
        if self.password is not None:
            auth = [self.username.encode()] if self.username else []
            setup.append(_command(b"AUTH", *auth, self.password.encode()))
        if self.db:
            setup.append(_command(b"SELECT", str(self.db).encode()))
        # Named, so that an operator's CLIENT LIST tells it from the layer's connections.
        setup.append(_command(b"CLIENT", b"SETNAME", CLIENT_NAME))
        self.writer.write(b"".join(setup))
        try:
            for _ in setup:
                await self._reply()
        except BaseException:
            self.close()
            raise

    async def _reply(self) -> None:
        assert self.reader is not None
        line = await self.reader.readline()
        if not line:
            raise ConnectionError("Redis closed the connection")
        if line.startswith(b"-"):
            raise ConnectionError(f"Redis answered {line.decode(errors='replace').strip()}")

    def close(self) -> None:
        if self.writer is not None:
            with contextlib.suppress(Exception):
                self.writer.close()
        self.reader = self.writer = None


def _command(*parts: bytes) -> bytes:
    """One command in Redis's protocol (RESP): an array of bulk strings."""
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        out.append(b"$%d\r\n%b\r\n" % (len(part), part))
    return b"".join(out)
