"""Keeps dumps apart from state changes: many transactions and blocks may run at once (shared), a dump runs
alone (exclusive), so a dump never holds a block half made."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class StateGate:
    def __init__(self) -> None:
        self._changing = 0
        self._dumping = False
        self._cond = asyncio.Condition()

    @asynccontextmanager
    async def shared(self) -> AsyncIterator[None]:
        async with self._cond:
            await self._cond.wait_for(lambda: not self._dumping)
            self._changing += 1
        try:
            yield
        finally:
            async with self._cond:
                self._changing -= 1
                self._cond.notify_all()

    @asynccontextmanager
    async def exclusive(self) -> AsyncIterator[None]:
        async with self._cond:
            self._dumping = True  # no new change starts; the ones running finish first
            await self._cond.wait_for(lambda: self._changing == 0)
        try:
            yield
        finally:
            async with self._cond:
                self._dumping = False
                self._cond.notify_all()
