"""One programme, one funded enterprise and its providers, each with its own API key, for the claim findings; and
the chain's own count of burns of an invoice."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from tests.api.support import Api, invoice_number

FUNDED = 100_000_00


@dataclass
class Claims:
    api: Api
    programme: dict[str, Any]
    enterprise: dict[str, Any]
    providers: list[dict[str, Any]]
    as_enterprise: Api
    as_providers: list[Api]
    first_block: int  # the chain's head before any of this world's claims

    def claim(self, by: int = 0, **fields: Any) -> httpx.Response:
        """A claim by the `by`-th provider: a fresh invoice of ¥20,000 (¥10,000 subsidy) unless told otherwise."""
        body = {
            "enterprise_id": self.enterprise["id"],
            "programme_id": self.programme["id"],
            "invoice_number": invoice_number(),
            "invoice_amount": 20_000_00,
            "category": "intelligent",
            **fields,
        }
        return self.as_providers[by].post("/v1/redemptions", body)

    def confirm(self, claim: dict[str, Any]) -> httpx.Response:
        return self.as_enterprise.post(f"/v1/redemptions/{claim['id']}/confirm")

    def burns(self, invoice_hash: str) -> int:
        """VoucherRedeemed events of this invoice on chain since the world was made (not the service's records)."""
        chain = self.api.service.ctx.chain
        logs = chain.rpc.call("eth_getLogs", [{"address": chain.address, "fromBlock": hex(self.first_block)}])
        events = [ev for ev in map(chain.events.decode, logs) if ev is not None]
        return sum(1 for ev in events if ev.name == "VoucherRedeemed" and ev.args["invoiceHash"] == invoice_hash)

    def balance(self) -> int:
        return self.api.service.ctx.chain.balance(self.enterprise["address"], self.programme["id"])


def claims_world(api: Api, *, providers: int = 1) -> Claims:
    made = [api.provider() for _ in range(providers)]
    enterprise = api.enterprise()
    programme = api.programme([p["id"] for p in made])
    api.fund(enterprise, programme["id"], FUNDED)
    return Claims(
        api,
        programme,
        enterprise,
        made,
        api.as_(api.key_for("enterprise", enterprise["id"])),
        [api.as_(api.key_for("provider", p["id"])) for p in made],
        api.service.ctx.chain.rpc.block_number(),
    )

