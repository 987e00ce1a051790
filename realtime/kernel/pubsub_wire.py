"""PUBLISH for channels-redis's pub/sub layer over a connection of our own, pipelined.

The layer sends each `group_send` through redis-py's asyncio client, behind a per-host lock
that subscribing and unsubscribing also take. On a socket's post that was the largest single
cost: about a third of the server's CPU per `chat.send` (py-spy, one sender, 0 subscribers).
A loop's publisher writes every waiting event here instead: the PUBLISH commands of a round
in one write, their replies read together. Channel names and the serializer are the layer's
own, so its subscribers see the same messages.

Only for the layer this project configures: `RedisPubSubChannelLayer` on plain `redis://`
hosts (no TLS, no Sentinel); anything else goes through the layer's `group_send`. With
several hosts (CHANNEL_LAYER_HOSTS) the layer shards groups over them by a hash of the
group's channel name; each PUBLISH goes to the host the layer's subscribers of that group
listen on, chosen with the layer's own function, on one connection per host. Like the
layer, it is at most once: a failed round is logged by the caller and its events are not sent
again; receivers repair gaps from the database.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any
from urllib.parse import unquote, urlsplit

from channels_redis.pubsub import RedisPubSubChannelLayer
from channels_redis.utils import _consistent_hash

CLIENT_NAME = b"switchboard-publish"


class PubSubWire:
    """One event loop's PUBLISH connections, one per host of the layer."""

    def __init__(self, layer: RedisPubSubChannelLayer, urls: list[str]) -> None:
        self.layer = layer
        self.prefix: str = layer._kwargs.get("prefix", "asgi")
        self.hosts = [HostWire(url) for url in urls]

    @classmethod
    def for_layer(cls, layer: Any) -> PubSubWire | None:
        """Wires for `layer` when it is the pub/sub layer on plain redis:// hosts."""
        if type(layer) is not RedisPubSubChannelLayer or layer._args:
            return None
        hosts = layer._kwargs.get("hosts") or []
        if not hosts or not all(isinstance(h, str) and h.startswith("redis://") for h in hosts):
            return None
        return cls(layer, list(hosts))

    async def publish(self, messages: list[tuple[str, dict[str, Any]]]) -> None:
        """PUBLISH each (group, message), in order for each group, one write per host; raises
        if any failed."""
        serialize = self.layer.serialize
        by_host: dict[int, list[bytes]] = {}
        for group, message in messages:
            channel = f"{self.prefix}__group__{group}".encode()
            host = _consistent_hash(channel, len(self.hosts))
            by_host.setdefault(host, []).append(_command(b"PUBLISH", channel, serialize(message)))
        if len(by_host) == 1:
            ((host, commands),) = by_host.items()
            await self.hosts[host].send(commands)
            return
        await asyncio.gather(*(self.hosts[h].send(c) for h, c in by_host.items()))

    def close(self) -> None:
        for host in self.hosts:
            host.close()


class HostWire:
    """A connection for PUBLISH to one Redis host, pipelined."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 6379
        self.db = int(parts.path.lstrip("/") or 0)
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def send(self, commands: list[bytes]) -> None:
        """Write the commands at once, then read a reply for each; raises if any failed."""
        if not self._open():
            await self._connect()  # first use, or Redis closed it (a restart) since
        assert self.reader is not None
        assert self.writer is not None
        self.writer.write(b"".join(commands))
        try:
            await self.writer.drain()
            for _ in commands:
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
