"""Deploys ComputeVoucher where a chain has none and records it in `deployment.json`.

Idempotent: an existing deployment whose code is on the chain is kept. A recorded deployment whose code
is gone (the chain's state was lost) is refused loudly rather than silently replaced.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from eth_account.signers.local import LocalAccount
from web3 import Web3

from backend.chain import compiler
from backend.chain.keys import load_or_create_key
from backend.chain.node.permissions import read_token

CONTRACT = "ComputeVoucher"
DEPLOYMENT_FILE = "deployment.json"
ADMIN_KEY_FILE = "admin.key"


class DeploymentError(Exception):
    """The recorded deployment does not match the chain; the message says what to do."""


@dataclass(frozen=True)
class ContractRecord:
    address: str
    deploy_block: int
    deploy_tx: str
    abi: list[dict[str, Any]]


@dataclass(frozen=True)
class Deployment:
    chain_id: int
    rpc_url: str
    admin: str
    contracts: dict[str, ContractRecord]

    @property
    def voucher(self) -> ContractRecord:
        return self.contracts[CONTRACT]

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=1))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> Deployment:
        raw = json.loads(path.read_text())
        contracts = {k: ContractRecord(**v) for k, v in raw.pop("contracts").items()}
        return cls(contracts=contracts, **raw)


def admin_account(data_dir: Path) -> LocalAccount:
    return load_or_create_key(data_dir / ADMIN_KEY_FILE)


def _deploy_contract(w3: Web3, admin: LocalAccount, chain_id: int) -> ContractRecord:
    artifact = compiler.load(CONTRACT)
    factory = w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
    tx = factory.constructor(admin.address, "").build_transaction(
        {
            "from": admin.address,
            "nonce": w3.eth.get_transaction_count(admin.address, "pending"),
            "gasPrice": 0,
            "chainId": chain_id,
        }
    )
    signed = admin.sign_transaction(tx)
    tx_hash = w3.eth.send_raw_transaction(signed.raw_transaction)
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=60)
    if receipt["status"] != 1 or not receipt["contractAddress"]:
        raise DeploymentError(f"deploying {CONTRACT} failed in transaction 0x{tx_hash.hex()}")
    return ContractRecord(
        address=receipt["contractAddress"],
        deploy_block=receipt["blockNumber"],
        deploy_tx="0x" + tx_hash.hex().removeprefix("0x"),
        abi=artifact.abi,
    )


def ensure_deployed(data_dir: Path, rpc_url: str, *, redeploy: bool = False, token: str | None = None) -> Deployment:
    """The deployment recorded for `data_dir`, deploying first if this chain has none.

    `token` is the node's bearer token for writes: the data folder's own `node-token` when not given.
    """
    token = token or read_token(data_dir)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": 30, "headers": headers}))
    chain_id = w3.eth.chain_id
    path = data_dir / DEPLOYMENT_FILE
    admin = admin_account(data_dir)
    if path.is_file():
        recorded = Deployment.load(path)
        if recorded.chain_id != chain_id:
            raise DeploymentError(
                f"{path} is for chain {recorded.chain_id}, but the node at {rpc_url} is chain {chain_id}: "
                "point at the right node or use another --data-dir"
            )
        address = recorded.voucher.address
        if w3.eth.get_code(Web3.to_checksum_address(address)):
            current = Deployment(chain_id, rpc_url, recorded.admin, recorded.contracts)
            if current != recorded:
                current.save(path)  # the node moved to another port: keep the record pointing at it
            return current
        if not redeploy:
            raise DeploymentError(
                f"{path} records {CONTRACT} at {address}, but the chain at {rpc_url} has no code there: "
                "the chain's state was lost. Nothing recorded against the old chain is valid on this one. "
                "To start a fresh ledger, run `voucher devnet up --redeploy`."
            )
    deployment = Deployment(
        chain_id=chain_id,
        rpc_url=rpc_url,
        admin=admin.address,
        contracts={CONTRACT: _deploy_contract(w3, admin, chain_id)},
    )
    deployment.save(path)
    return deployment
