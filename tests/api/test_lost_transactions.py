"""A node that went back (restored from an older state) lost transactions the database records as mined: the
monitor's recovery pass reopens them, and with what it learnt from earlier passes a pass costs what changed
since the last one: no question to the chain about signers with nothing new, no second read of settled rows."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import func
from sqlmodel import col, select

from backend.chain.recovery import LATE_COMMIT_S, MINED, MinedSoFar, reopen_lost
from backend.models import ChainTx
from backend.services.monitor import sweep
from tests.api.support import Api
from tests.polling import eventually

pytestmark = pytest.mark.both_databases


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def asked(api: Api, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The signers whose nonce a recovery pass asks the chain for."""
    rpc = api.service.ctx.pipeline.rpc
    calls: list[str] = []
    real = rpc.latest_nonce

    def latest_nonce(address: str) -> int:
        calls.append(address)
        return real(address)

    monkeypatch.setattr(rpc, "latest_nonce", latest_nonce)
    yield calls


def mined_signers(api: Api) -> set[str]:
    with api.service.ctx.read() as s:
        return set(s.exec(select(ChainTx.signer).where(col(ChainTx.status).in_(MINED)).distinct()).all())


def rows_after(api: Api, last_id: int) -> list[ChainTx]:
    with api.service.ctx.read() as s:
        return list(s.exec(select(ChainTx).where(col(ChainTx.id) > last_id).order_by(col(ChainTx.id))).all())


def last_id(api: Api) -> int:
    with api.service.ctx.read() as s:
        return int(s.exec(select(func.max(ChainTx.id))).one() or 0)


def test_a_pass_asks_only_about_signers_with_newly_mined_transactions(api: Api, asked: list[str]) -> None:
    pipeline, clock = api.service.ctx.pipeline, Clock()
    api.provider()
    seen = MinedSoFar(clock=clock)
    assert reopen_lost(pipeline, seen) == 0
    assert sorted(asked) == sorted(mined_signers(api))  # the first pass knows nothing yet: every signer
    asked.clear()
    assert reopen_lost(pipeline, seen) == 0
    assert asked == []  # nothing new, and the chain still holds the head the last pass saw
    before = last_id(api)
    api.enterprise()
    (new,) = rows_after(api, before)
    assert reopen_lost(pipeline, seen) == 0
    assert asked == [new.signer]


def test_settled_rows_are_not_read_again_once_past_the_late_commit_window(api: Api) -> None:
    pipeline, clock = api.service.ctx.pipeline, Clock()
    seen = MinedSoFar(clock=clock)
    reopen_lost(pipeline, seen)
    assert seen.mark == 0  # rows this recent are read again: one whose insert committed late is still seen
    clock.now += LATE_COMMIT_S
    reopen_lost(pipeline, seen)
    assert seen.mark == last_id(api)  # every row is final: the next pass starts after the newest


@pytest.mark.parametrize("pass_between", [False, True], ids=["anchor-kept", "anchor-lost"])
def test_transactions_a_node_that_went_back_lost_are_reopened_and_mined_again(
    api: Api, asked: list[str], pass_between: bool
) -> None:
    """anchor-kept: the node goes back to the head the last pass saw, and only the new rows tell what it lost;
    anchor-lost: a pass saw the lost blocks, so the head it kept is gone and every signer is asked again."""
    ctx, clock = api.service.ctx, Clock()
    rpc = ctx.chain.rpc
    seen = MinedSoFar(clock=clock)
    reopen_lost(ctx.pipeline, seen)
    snapshot = rpc.call("evm_snapshot")
    before = last_id(api)
    api.provider()
    api.enterprise()
    made = rows_after(api, before)
    assert made and all(tx.status == "confirmed" for tx in made)
    if pass_between:
        assert reopen_lost(ctx.pipeline, seen) == 0
    assert rpc.call("evm_revert", [snapshot]) is True  # the node is back where it was before those blocks
    asked.clear()
    assert reopen_lost(ctx.pipeline, seen) == len(made)
    assert {tx.status for tx in rows_after(api, before)} == {"signed"}
    signers = mined_signers(api) | {tx.signer for tx in made} if pass_between else {tx.signer for tx in made}
    assert sorted(asked) == sorted(signers)

    def mined_again() -> bool:
        sweep(ctx, older_than_s=0)  # as the monitor does: re-sent from their stored bytes, then recorded
        return {tx.status for tx in rows_after(api, before)} == {"confirmed"}

    eventually(mined_again)
    assert reopen_lost(ctx.pipeline, seen) == 0
