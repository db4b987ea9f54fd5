"""Contracts of the audit's own on the session devnet: a fresh ComputeVoucher whose whole history is one known
lifecycle, and fresh FaultyVoucher deployments that each break one rule on purpose."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from web3 import Web3
from web3.contract import Contract

from backend.chain import compiler
from backend.chain.deploy import CONTRACT, DEPLOYMENT_FILE, ContractRecord, Deployment, admin_account
from tests.factory import ServiceFactory
from tests.support import ENTERPRISE, PROVIDER, Ledger, ledger_of, node_web3

FAULTY_SOURCE = "tests/audit/contracts/FaultyVoucher.sol"


@dataclass
class CleanChain:
    """A ComputeVoucher that went through issuance, redemption, revocation, migration, anchoring and reclaim."""

    ledger: Ledger
    deployment_file: Path
    events: Counter[str]  # what the lifecycle below emitted, counted as it was done
    holders: int
    programmes: int
    totals: dict[int, tuple[int, int, int, int]]  # issued, redeemed, reclaimed, revoked


@pytest.fixture(scope="module")
def clean_chain(services: ServiceFactory) -> CleanChain:
    folder = services.folder("audit-clean", own_contract=True)
    ledger = ledger_of(folder, Deployment.load(folder / DEPLOYMENT_FILE))
    f, ev, w3 = ledger.contract.functions, Counter[str](), ledger.w3
    ledger.grant_staff_roles()
    ev["RoleGranted"] += 1 + 3  # the constructor's admin grant, then these
    e1, e2, e3, e4 = (ledger.new_participant(ENTERPRISE) for _ in range(4))
    provider = ledger.new_participant(PROVIDER)
    ev["ParticipantRegistered"] += 5
    a = ledger.create_programme([provider.address])
    b = ledger.create_programme([provider.address], validUntil=ledger.now() + 600)  # expires during the test
    ev["ProgrammeCreated"] += 2
    ev["ProgrammeProviderSet"] += 2

    ledger.issue(a, e1.address, 1000)
    ledger.issue(a, e2.address, 500)
    ledger.send(f.issueBatch(a, [e1.address, e3.address], [200, 300], [os.urandom(32)] * 2), ledger.issuer)
    ledger.issue(b, e1.address, 300)
    ledger.issue(b, e2.address, 200)
    ev["VoucherIssued"] += 6
    for enterprise, programme, amount in ((e1, a, 100), (e2, a, 50), (e1, b, 10)):
        r = ledger.claim(enterprise, programme, amount)
        ledger.redeem(provider, r, ledger.sign(enterprise, r, provider.address))
    ev["VoucherRedeemed"] += 3
    ledger.send(f.revoke(a, e2.address, 100, 7), ledger.supervisor)
    ev["VoucherRevoked"] += 1
    ledger.send(f.migrateHolder(e3.address, e4.address, [a, b]), ledger.admin)  # e3 holds only programme a
    ev["VoucherMigrated"] += 1
    ev["AccountFrozen"] += 1  # the migration retires e3's key
    ledger.send(f.anchor(os.urandom(32), b"settlement".ljust(32, b"\0")), ledger.finance)
    ledger.send(f.anchor(os.urandom(32), b"audit-report".ljust(32, b"\0")), ledger.supervisor)
    ev["HashAnchored"] += 2
    w3.provider.make_request("evm_increaseTime", [601])  # type: ignore[arg-type]
    w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
    ledger.send(f.reclaim(b, [e1.address, e2.address, e4.address]), ledger.issuer)  # e4 holds none of b
    ev["VoucherReclaimed"] += 2
    ev["TransferSingle"] += 6 + 3 + 1 + 2 + 2  # a mint per issuance, a burn per burn, burn and mint per migration
    return CleanChain(
        ledger=ledger,
        deployment_file=folder / DEPLOYMENT_FILE,
        events=ev,
        holders=4,
        programmes=2,
        totals={a: (2000, 150, 0, 100), b: (500, 10, 490, 0)},
    )


@pytest.fixture(scope="module")
def faulty_artifact() -> compiler.Artifact:
    """Compiled once per module by the project's compiler (test sources under tests/ are kept, like contracts/)."""
    return compiler.compile_input(compiler.standard_input([FAULTY_SOURCE]))["FaultyVoucher"]


@dataclass
class Faulty:
    ledger: Ledger  # every role is the admin: the faulty contract checks no roles
    deployment_file: Path

    def do(self, name: str, *args: object) -> None:
        self.ledger.send(getattr(self.ledger.contract.functions, name)(*args), self.ledger.admin)


@pytest.fixture
def deploy_faulty(
    deployment: Deployment, devnet_dir: Path, faulty_artifact: compiler.Artifact, tmp_path: Path
) -> Callable[[], Faulty]:
    """Deploys a fresh FaultyVoucher and writes a deployment.json for it, as `voucher audit verify` reads it."""
    w3, admin, chain_id = node_web3(deployment.rpc_url, devnet_dir), admin_account(devnet_dir), deployment.chain_id

    def deploy() -> Faulty:
        factory = w3.eth.contract(abi=faulty_artifact.abi, bytecode=faulty_artifact.bytecode)
        nonce = w3.eth.get_transaction_count(admin.address, "pending")
        tx = factory.constructor().build_transaction(
            {"from": admin.address, "gasPrice": 0, "chainId": chain_id, "nonce": nonce}
        )
        receipt = w3.eth.wait_for_transaction_receipt(
            w3.eth.send_raw_transaction(admin.sign_transaction(tx).raw_transaction), timeout=30
        )
        assert receipt["status"] == 1
        address = str(receipt["contractAddress"])
        record = ContractRecord(
            address, receipt["blockNumber"], receipt["transactionHash"].to_0x_hex(), faulty_artifact.abi
        )
        path = tmp_path / DEPLOYMENT_FILE
        Deployment(chain_id, deployment.rpc_url, admin.address, {CONTRACT: record}).save(path)
        contract: Contract = w3.eth.contract(address=Web3.to_checksum_address(address), abi=faulty_artifact.abi)
        ledger = Ledger(w3, contract, chain_id, admin, admin, admin, admin)
        return Faulty(ledger, path)

    return deploy
