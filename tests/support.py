"""A thin test harness over the deployed ComputeVoucher: send as any account, pin reverts to custom errors."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import ContractLogicError
from web3.logs import DISCARD
from web3.types import TxReceipt

from backend.chain import devnet
from backend.chain.consent import Redemption, sign_consent
from backend.chain.deploy import Deployment, admin_account
from backend.chain.errors import DecodedError, ErrorDecoder

ENTERPRISE, PROVIDER = 1, 2
YEAR = 365 * 24 * 3600
ISSUER_ROLE = Web3.keccak(text="ISSUER_ROLE")
FINANCE_ROLE = Web3.keccak(text="FINANCE_ROLE")
SUPERVISOR_ROLE = Web3.keccak(text="SUPERVISOR_ROLE")
ADMIN_ROLE = b"\x00" * 32


def node_web3(url: str, data_dir: Path) -> Web3:
    """A web3 client of the devnet at `url` carrying the node token of `data_dir` (its writes need it)."""
    headers = devnet.auth_headers(data_dir)
    return Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": 30, "headers": headers}))


def ledger_of(data_dir: Path, deployment: Deployment) -> Ledger:
    """A test ledger over the contract recorded for `data_dir`: its admin, fresh staff keys, the node token."""
    w3 = node_web3(deployment.rpc_url, data_dir)
    address = Web3.to_checksum_address(deployment.voucher.address)
    return Ledger(w3=w3, contract=w3.eth.contract(address=address, abi=deployment.voucher.abi),
                  chain_id=deployment.chain_id, admin=admin_account(data_dir), issuer=Account.create(),
                  finance=Account.create(), supervisor=Account.create())  # fmt: skip


def raw_transaction(signer: LocalAccount, fn: Any, **params: Any) -> bytes:
    """The contract call `fn` with these transaction fields (gas price 0: the devnet's gas is free), signed by
    `signer`: for sending straight to the node without waiting on it, or past the service."""
    tx = fn.build_transaction({"from": signer.address, "gasPrice": 0, **params})
    return bytes(signer.sign_transaction(tx).raw_transaction)


def copy_node_access(devnet_dir: Path, target: Path) -> None:
    """Gives a folder the session devnet's admin key and node token, as an operator's service folder has."""
    target.mkdir(parents=True, exist_ok=True)
    for name in ("admin.key", "node-token"):
        shutil.copy2(devnet_dir / name, target / name)


class Reverted(Exception):
    def __init__(self, error: DecodedError | None, raw: Any) -> None:
        super().__init__(str(error) if error else f"undecoded revert: {raw!r}")
        self.error = error


@dataclass
class Ledger:
    w3: Web3
    contract: Contract
    chain_id: int
    admin: LocalAccount
    issuer: LocalAccount
    finance: LocalAccount
    supervisor: LocalAccount
    decoder: ErrorDecoder = field(init=False)
    _permitted: set[str] = field(init=False, default_factory=set)

    def __post_init__(self) -> None:
        self.decoder = ErrorDecoder(cast("list[dict[str, Any]]", self.contract.abi))

    def grant_staff_roles(self) -> None:
        """Gives the issuer, finance and supervisor keys their roles, as an operator's first start does."""
        f = self.contract.functions
        for role, holder in ((ISSUER_ROLE, self.issuer), (FINANCE_ROLE, self.finance),
                             (SUPERVISOR_ROLE, self.supervisor)):  # fmt: skip
            self.send(f.grantRole(role, holder.address), self.admin)

    def permit(self, address: str) -> None:
        """Puts a test's own key on the node's allowlist, as the service does for the keys it makes."""
        if address not in self._permitted:
            answer = self.w3.provider.make_request("perm_addAccountsToAllowlist", [[address]])  # type: ignore[arg-type]
            assert answer.get("result") == "Success", answer
            self._permitted.add(address)

    # -- sending ------------------------------------------------------------------------------
    def send(self, fn: Any, sender: LocalAccount) -> TxReceipt:
        """Sends `fn` signed by `sender`; a revert raises `Reverted` carrying the decoded custom error."""
        self.permit(sender.address)
        nonce = self.w3.eth.get_transaction_count(sender.address, "pending")
        try:
            raw = raw_transaction(sender, fn, chainId=self.chain_id, nonce=nonce)
        except ContractLogicError as exc:
            raise Reverted(self.decoder.decode(exc.data if isinstance(exc.data, str) else None), exc) from None
        tx_hash = self.w3.eth.send_raw_transaction(raw)
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=30)
        assert receipt["status"] == 1, f"estimated fine but failed on chain: {receipt}"
        return receipt

    @contextlib.contextmanager
    def reverts(self, name: str, **args: Any) -> Iterator[None]:
        """Asserts the block reverts with custom error `name`, and with exactly `args` where given."""
        try:
            yield
        except Reverted as exc:
            assert exc.error is not None, f"expected {name}, got an undecodable revert"
            assert exc.error.name == name, f"expected {name}, got {exc.error}"
            for key, value in args.items():
                if isinstance(value, bytes):  # decoded errors carry bytes as 0x-hex
                    value = "0x" + value.hex()
                assert exc.error.args[key] == value, f"{name}.{key}: expected {value!r}, got {exc.error.args[key]!r}"
        else:
            raise AssertionError(f"expected revert {name}, but the call succeeded")

    def events(self, receipt: TxReceipt, name: str) -> list[dict[str, Any]]:
        return [dict(e["args"]) for e in getattr(self.contract.events, name)().process_receipt(receipt, errors=DISCARD)]

    # -- chain time -----------------------------------------------------------------------------
    def now(self) -> int:
        return int(self.w3.eth.get_block("latest")["timestamp"])

    def travel_to(self, timestamp: int) -> None:
        self.w3.provider.make_request("evm_setNextBlockTimestamp", [timestamp])  # type: ignore[arg-type]
        self.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]

    # -- domain shortcuts ---------------------------------------------------------------------------
    def new_participant(self, kind: int, *, register: bool = True) -> LocalAccount:
        account: LocalAccount = Account.create()
        if register:
            self.send(self.contract.functions.registerParticipant(account.address, kind, os.urandom(32)), self.admin)
        return account

    def create_programme(self, providers: list[str], **overrides: Any) -> int:
        now = self.now()
        params = {
            "budget": 10_000_000_00,
            "capPerEnterprise": 1_000_000_00,
            "ratioBps": 5000,
            "validFrom": now - 1,
            "validUntil": now + YEAR,
            "categories": 0b11,
            "providers": providers,
        }
        params.update(overrides)
        receipt = self.send(self.contract.functions.createProgramme(params), self.admin)
        return int(self.events(receipt, "ProgrammeCreated")[0]["programmeId"])

    def issue(self, programme_id: int, enterprise: str, amount: int) -> TxReceipt:
        return self.send(self.contract.functions.issue(programme_id, enterprise, amount, os.urandom(32)), self.issuer)

    def balance(self, holder: str, programme_id: int) -> int:
        return int(self.contract.functions.balanceOf(holder, programme_id).call())

    def claim(self, enterprise: LocalAccount, programme_id: int, amount: int, **overrides: Any) -> Redemption:
        fields: dict[str, Any] = {
            "enterprise": enterprise.address,
            "programme_id": programme_id,
            "amount": amount,
            "invoice_amount": amount * 2,
            "invoice_hash": os.urandom(32),
            "category": 0,
            "nonce": int.from_bytes(os.urandom(8), "big"),
            "deadline": self.now() + 3600,
        }
        fields.update(overrides)
        return Redemption(**fields)

    def sign(self, signer: LocalAccount, r: Redemption, provider: str, **domain: Any) -> bytes:
        return sign_consent(
            signer,
            r,
            provider,
            chain_id=domain.get("chain_id", self.chain_id),
            contract=domain.get("contract", self.contract.address),
        )

    def redeem(self, provider: LocalAccount, r: Redemption, signature: bytes) -> TxReceipt:
        return self.send(self.contract.functions.redeem(r.as_struct(), signature), provider)
