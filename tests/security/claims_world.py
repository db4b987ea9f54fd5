"""One programme, one funded enterprise and its providers, each with its own API key, for the claim findings; and
the chain's own count of burns of an invoice."""

from __future__ import annotations

from dataclasses import dataclass

from tests.api.support import Api, Funded, funded

FUNDED = 100_000_00


@dataclass
class Claims(Funded):
    first_block: int  # the chain's head before any of this world's claims

    def burns(self, invoice_hash: str) -> int:
        """VoucherRedeemed events of this invoice on chain since the world was made (not the service's records)."""
        chain = self.api.service.ctx.chain
        logs = chain.rpc.call("eth_getLogs", [{"address": chain.address, "fromBlock": hex(self.first_block)}])
        events = [ev for ev in map(chain.events.decode, logs) if ev is not None]
        return sum(1 for ev in events if ev.name == "VoucherRedeemed" and ev.args["invoiceHash"] == invoice_hash)

    def balance(self) -> int:
        return self.api.service.ctx.chain.balance(self.enterprise["address"], self.programme["id"])


def claims_world(api: Api, *, providers: int = 1) -> Claims:
    world = funded(api, providers=providers, amount=FUNDED)
    return Claims(**vars(world), first_block=api.service.ctx.chain.rpc.block_number())
