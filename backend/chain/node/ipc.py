"""An asynchronous JSON-RPC client for the private node's IPC socket: a small pool of connections, one request
in flight on each. anvil answers each request with one line of JSON."""

from __future__ import annotations

import asyncio
import json
from typing import Any

# Answers can be large (a state dump is megabytes): the line limit only guards against a runaway node.
LINE_LIMIT = 1 << 30


class NodeDown(Exception):
    """The private node did not answer on its socket."""


class IpcPool:
    def __init__(self, path: str, *, size: int = 16) -> None:
        self._path = path
        self._idle: asyncio.LifoQueue[tuple[asyncio.StreamReader, asyncio.StreamWriter] | None] = asyncio.LifoQueue()
        for _ in range(size):
            self._idle.put_nowait(None)  # a free slot, connected on first use
        self._ids = 0

    async def raw(self, body: bytes) -> bytes:
        """Sends one JSON-RPC request (or batch) as bytes and returns the node's answer as bytes."""
        conn = await self._idle.get()
        try:
            if conn is None:
                conn = await asyncio.open_unix_connection(self._path, limit=LINE_LIMIT)
            reader, writer = conn
            writer.write(body)
            await writer.drain()
            line = await reader.readline()
            if not line.endswith(b"\n"):
                raise ConnectionError("the node closed its socket")
        except (OSError, ConnectionError, asyncio.IncompleteReadError, ValueError) as exc:
            if conn is not None:
                conn[1].close()
            self._idle.put_nowait(None)
            raise NodeDown(f"the private node did not answer ({type(exc).__name__})") from None
        except BaseException:  # cancelled mid-request: the connection's next line would be this answer
            if conn is not None:
                conn[1].close()
            self._idle.put_nowait(None)
            raise
        self._idle.put_nowait(conn)
        return line

    async def call(self, method: str, params: list[Any] | None = None) -> Any:
        """One call; a JSON-RPC error raises RuntimeError with the node's message."""
        self._ids += 1
        answer = json.loads(await self.raw(json.dumps({"jsonrpc": "2.0", "id": self._ids, "method": method,
                                                       "params": params or []}).encode()))  # fmt: skip
        if "error" in answer:
            raise RuntimeError(f"{method}: {answer['error'].get('message')}")
        return answer.get("result")

    async def close(self) -> None:
        while not self._idle.empty():
            conn = self._idle.get_nowait()
            if conn is not None:
                conn[1].close()
