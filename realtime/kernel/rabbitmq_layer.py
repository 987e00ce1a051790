"""The channel layer on RabbitMQ (`CHANNEL_LAYER=rabbitmq`): channels-rabbitmq, one per loop.

channels-rabbitmq's layer belongs to the event loop it was made in (its connection, its
queue, its tasks) and refuses to be made outside a running one. Channels keeps one layer
object per process (`get_channel_layer()`), and this project uses it from several loops: the
server's, the publisher's own long-lived loop in a thread (Celery workers, management
commands: `broadcast._loop`) and, in tests, a new loop per test. This class is that one
object: it makes a channels-rabbitmq layer for each loop on its first use there, reuses it for
every later call from that loop, and closes it when the loop closes (as channels-redis's
pub/sub layer does with its connections).

It adds two things. Nothing waits for RabbitMQ while it is away (channels-rabbitmq would wait
for its reconnection): past a layer's first connection (`connect_wait`), a send, join or leave
without a connection fails at once, so a request that publishes, or a subscribe, answers at
once. And it counts lost connections (`lost_connections`): RabbitMQ deletes a process's
exclusive queue with its connection, so what was queued for the process is gone, and the hub
catches up from the database without waiting to miss a heartbeat.

Delivery stays at-most-once, like the Redis layers: a group_send to a process whose queue is
full (`remote_capacity`) is dropped by RabbitMQ with a warning in the sender's log. Only the
hub reads the layer here, so one slow reader cannot hold up a process's other deliveries.
"""

from __future__ import annotations

import asyncio
import logging
import types
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import carehare
from channels_rabbitmq.core import RabbitmqChannelLayer

logger = logging.getLogger(__name__)


class _CancelledConsumer(logging.Filter):
    """carehare logs "Closing consumer" with a traceback at ERROR whenever its consumer's task
    is cancelled, which every server's shutdown does (all of a loop's tasks are cancelled
    before it closes): not an error."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not isinstance(error, asyncio.CancelledError)


logging.getLogger("carehare._consume_channel").addFilter(_CancelledConsumer())

DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672"
# How long a loop's layer may take to close (its connection's closing handshake) when the
# loop closes; a broker that does not answer must not hold a test or a shutdown up.
CLOSE_WAIT = 2.0


def carehare_url(url: str) -> str:
    """`url` as carehare (the AMQP client of channels-rabbitmq) reads it.

    Celery's broker URLs name the default virtual host `/` with a trailing `//` (kombu); carehare
    refuses a path with a second slash and warns on a lone trailing one. `pyamqp://` is kombu's
    name for `amqp://`.
    """
    parts = urlsplit(url)
    scheme = "amqp" if parts.scheme == "pyamqp" else parts.scheme
    if scheme not in ("amqp", "amqps"):
        raise ValueError(f"not an AMQP URL: {parts.scheme}://…")
    vhost = unquote(parts.path[1:]) if parts.path not in ("", "/", "//") else "/"
    path = "" if vhost == "/" else "/" + quote(vhost, safe="")
    return urlunsplit((scheme, parts.netloc, path, parts.query, ""))


async def probe(url: str, within: float = 3.0) -> None:
    """Open and close a connection to the RabbitMQ at `url`; raise if that takes longer than
    `within` seconds or fails."""
    connection = carehare.Connection(carehare_url(url), connect_timeout=within)
    async with asyncio.timeout(within):
        await connection.connect()
        await connection.close()


class RabbitMQChannelLayer:
    """Channels' layer API over one channels-rabbitmq layer per event loop."""

    extensions = ["groups"]

    def __init__(
        self, host: str = DEFAULT_URL, *, connect_wait: float = 5.0, **config: Any
    ) -> None:
        self.host = carehare_url(host)
        self.connect_wait = connect_wait
        self.config = config  # the rest goes to channels-rabbitmq as it is
        self._loops: dict[asyncio.AbstractEventLoop, _LoopLayer] = {}

    async def new_channel(self, prefix: str = "specific.") -> str:
        """A channel of this loop's layer (its name says which queue delivers to it)."""
        return str(await self._here().layer.new_channel(prefix))

    async def receive(self, channel: str) -> dict[str, Any]:
        """The next message for `channel`, a channel this loop made."""
        message: dict[str, Any] = await self._here().layer.receive(channel)
        return message

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        here = await self._connected()
        await here.layer.send(channel, message)

    async def group_add(self, group: str, channel: str) -> None:
        here = await self._connected()
        await here.layer.group_add(group, channel)

    async def group_discard(self, group: str, channel: str) -> None:
        here = await self._connected()
        await here.layer.group_discard(group, channel)

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        """Publish to every process with a member in `group` (confirmed by RabbitMQ)."""
        here = await self._connected()
        await here.layer.group_send(group, message)

    def lost_connections(self) -> int:
        """How often the running loop's layer lost its connection, and its queue with it."""
        here = self._loops.get(asyncio.get_running_loop())
        return 0 if here is None else here.lost

    async def close(self) -> None:
        """Close the running loop's layer (closing the loop does it too)."""
        here = self._loops.pop(asyncio.get_running_loop(), None)
        if here is not None:
            await here.close()

    async def _connected(self) -> _LoopLayer:
        here = self._here()
        await here.wait_connected(self.connect_wait)
        return here

    def _here(self) -> _LoopLayer:
        loop = asyncio.get_running_loop()
        here = self._loops.get(loop)
        if here is None:
            layer = RabbitmqChannelLayer(host=self.host, **self.config)
            here = self._loops[loop] = _LoopLayer(layer)
            self._close_with(loop, here)
        return here

    def _close_with(self, loop: asyncio.AbstractEventLoop, here: _LoopLayer) -> None:
        """Close `here` when `loop` closes: its connection and tasks belong to that loop."""
        close_loop = loop.close

        def close(self_loop: asyncio.AbstractEventLoop) -> None:
            if self._loops.get(loop) is here:
                del self._loops[loop]
                if not loop.is_running() and not loop.is_closed():
                    loop.run_until_complete(here.close())
                    # What is still pending would be destroyed with the loop: let it end first
                    # (carehare leaves a task waiting for deliveries behind a closed consumer).
                    pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
                    for task in pending:
                        task.cancel()
                    if pending:
                        loop.run_until_complete(asyncio.wait(pending))
            loop.close = close_loop  # type: ignore[method-assign]
            close_loop()

        loop.close = types.MethodType(close, loop)  # type: ignore[method-assign]


class _LoopLayer:
    """One loop's channels-rabbitmq layer and what is known of its connection."""

    def __init__(self, layer: Any) -> None:
        self.layer = layer
        self.lost = 0
        self.connection: Any = None  # the latest carehare connection
        self.started = asyncio.get_running_loop().time()
        self.watcher = asyncio.create_task(self._watch(), name="rabbitmq-layer-watch")

    async def wait_connected(self, within: float) -> None:
        """Return once the layer is connected, or raise TimeoutError.

        Only the layer's first connection is waited for, up to `within` seconds from its
        start. Once it has been connected and lost, or after that, a call without a connection
        fails at once: RabbitMQ is away, and a caller (a request whose write publishes) must
        not wait for it; what it would have sent is repaired by the receivers' catch-up.
        """
        connection = self.layer.carehare_connection  # a future, resolved while connected
        if connection.done():
            return
        left = 0.0 if self.lost else self.started + within - asyncio.get_running_loop().time()
        if left > 0:
            done, _ = await asyncio.wait({connection}, timeout=left)
            if done:
                return
        raise TimeoutError("the RabbitMQ channel layer has no connection (RabbitMQ is away)")

    async def _watch(self) -> None:
        """Count the connections lost: each one took this process's queue with it.

        It waits on the layer's futures without awaiting them itself: cancelling a task that
        awaits a future cancels the future, which the layer and carehare share.
        """
        seen = None
        while True:  # until cancelled, before the layer is closed (its futures raise then)
            connected = self.layer.carehare_connection
            await asyncio.wait({connected})
            connection = connected.result()
            if connection is seen:  # lost, and the layer has not started reconnecting yet
                await asyncio.sleep(0.05)
                continue
            seen = self.connection = connection
            await asyncio.wait({connection.closed})
            self.lost += 1
            logger.warning("RabbitMQ channel layer lost its connection; reconnecting")

    async def close(self) -> None:
        self.watcher.cancel()
        await asyncio.gather(self.watcher, return_exceptions=True)
        try:
            async with asyncio.timeout(CLOSE_WAIT):
                try:
                    await self.layer.close()
                finally:
                    # Its tasks may have been cancelled before it was closed (a loop's tasks
                    # all are when `asyncio.run` ends), leaving its connection open.
                    if self.connection is not None and not self.connection.closed.done():
                        await self.connection.close()
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
            # Not this task: the layer's own, cancelled with the rest of a closing loop's tasks.
            logger.debug("closing a RabbitMQ channel layer", exc_info=True)
        except Exception:
            logger.debug("closing a RabbitMQ channel layer", exc_info=True)
