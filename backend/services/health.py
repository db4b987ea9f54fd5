"""The service's health as the chain sees it: which ledger it serves, the chain's head and clock, and the pause."""

from __future__ import annotations

from dataclasses import dataclass

from backend.services.context import Context


@dataclass(frozen=True)
class Health:
    chain_id: int
    contract: str
    block: int
    chain_time: int  # programme windows are judged by this clock, not the server's
    paused: bool


def check_health(ctx: Context) -> Health:
    return Health(
        chain_id=ctx.chain.chain_id,
        contract=ctx.chain.address,
        block=ctx.chain.rpc.block_number(),
        chain_time=ctx.chain.now(),
        paused=ctx.chain.paused(),
    )
