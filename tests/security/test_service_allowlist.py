"""The service keeps the node's allowlist to its own keys: each managed key it makes is allowlisted through
Besu's perm API before its first transaction, a key retired by rotation is taken off, and a restart puts back
any key made just before a crash."""

from __future__ import annotations

from typing import Any

from backend.services.context import Context
from backend.services.wiring import build_context
from tests.api.support import Api, Service


def _allowlist(ctx: Context) -> set[str]:
    return {a.lower() for a in ctx.chain.rpc.call("perm_getAccountsAllowlist")}


def test_a_registered_participant_is_allowlisted_and_a_retired_key_is_removed(api: Api, service: Service) -> None:
    ctx = service.ctx
    operators = {a.lower() for a in ctx.operators.values()}
    assert operators <= _allowlist(ctx)
    enterprise: dict[str, Any] = api.enterprise()
    old = enterprise["address"].lower()
    assert old in _allowlist(ctx)
    rotated = api.ok(api.post(f"/v1/participants/{enterprise['id']}/rotate-key"))
    new = api.ok(api.get(f"/v1/participants/{enterprise['id']}"))["address"].lower()
    assert rotated and new != old
    listed = _allowlist(ctx)
    assert new in listed and old not in listed


def test_a_restart_allowlists_a_key_made_before_a_crash(api: Api, service: Service) -> None:
    ctx = service.ctx
    orphan = ctx.keys.create("participant")  # as if the process died before allowlisting it
    ctx.chain.forbid(orphan)
    assert orphan.lower() not in _allowlist(ctx)
    again = build_context(ctx.settings)
    try:
        assert orphan.lower() in _allowlist(again)
    finally:
        again.close()
