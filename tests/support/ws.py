"""A test client for `/ws/`: each frame it receives is validated against the frame schemas."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from realtime.kernel.events import TutorialErrorFrame, TutorialMessageFrame, server_frame_adapter
from tests.support.asyncapi import validate_frame

Frame = dict[str, Any]


class WsClient:
    """Keeps every frame received; `expect` waits for the next one matching a predicate."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.frames: list[Frame] = []  # everything received, in order
        self._unclaimed: list[Frame] = []  # received but not yet returned by `expect`

    @classmethod
    async def open(
        cls, base_url: str, path: str = "/ws/", *, greeted: bool = True, **kwargs: Any
    ) -> WsClient:
        """Connect; on `/ws/` wait for `hello` unless told the server will not greet."""
        url = base_url.replace("http://", "ws://") + path
        client = cls(await connect(url, open_timeout=10, max_size=2**22, **kwargs))
        if path == "/ws/" and greeted:
            await client.expect("hello")
        return client

    async def close(self) -> None:
        await self.ws.close()

    async def send(self, **frame: Any) -> None:
        await self.ws.send(json.dumps(frame))

    async def send_raw(self, raw: str) -> None:
        await self.ws.send(raw)

    async def _receive(self, timeout: float) -> Frame:
        frame = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
        if "type" in frame:
            server_frame_adapter.validate_python(frame)
        elif "error" in frame:
            TutorialErrorFrame.model_validate(frame)
        else:
            TutorialMessageFrame.model_validate(frame)
        # ...and against the committed AsyncAPI document, which is generated from them.
        validate_frame(frame, "gateway" if "type" in frame else "tutorial")
        self.frames.append(frame)
        self._unclaimed.append(frame)
        return dict(frame)

    async def expect(self, kind: str | Callable[[Frame], bool], timeout: float = 10.0) -> Frame:
        """The first frame not yet returned that matches (by `type`, or a predicate)."""
        match = (lambda f: f.get("type") == kind) if isinstance(kind, str) else kind
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            for index, frame in enumerate(self._unclaimed):
                if match(frame):
                    del self._unclaimed[index]
                    return frame
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"no frame matching {kind!r}; got {self._recent()}")
            try:
                await self._receive(remaining)
            except TimeoutError:
                raise AssertionError(
                    f"no frame matching {kind!r} in {timeout}s; got {self._recent()}"
                ) from None

    def _recent(self) -> str:
        """The last frames received, each cut short (bodies can be kilobytes)."""
        return "\n".join(repr(frame)[:300] for frame in self.frames[-10:])

    async def request(self, timeout: float = 10.0, **frame: Any) -> Frame:
        """Send a frame with a fresh `ref` and return the reply (or error) carrying it."""
        ref = frame.setdefault("ref", f"r{id(frame)}")
        await self.send(**frame)
        return await self.expect(lambda f: f.get("ref") == ref, timeout)

    async def drain(self, seconds: float) -> list[Frame]:
        """Everything that arrives within the next `seconds` (to see what else comes)."""
        start = len(self.frames)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while (remaining := deadline - loop.time()) > 0:
            try:
                await self._receive(remaining)
            except TimeoutError:
                break
        return self.frames[start:]

    async def closed(self, timeout: float = 10.0) -> int | None:
        """Read until the server closes the socket; its close code."""
        try:
            while True:
                await self._receive(timeout)
        except ConnectionClosed:
            return self.ws.close_code

    def messages(self, room: str | None = None) -> list[Frame]:
        return [
            f
            for f in self.frames
            if f.get("type") == "chat.message" and (room is None or f["room"] == room)
        ]
