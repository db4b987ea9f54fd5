"""The enterprise's EIP-712 consent: bound to its fields, the provider, the chain and the contract; used once."""

from __future__ import annotations

from dataclasses import replace

import pytest
from coincurve import PublicKey
from eth_account import Account
from eth_account.messages import _hash_eip191_message, encode_typed_data
from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from backend.chain.consent import Redemption, consent_digest
from tests.support import ENTERPRISE, PROVIDER, Ledger

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


@pytest.fixture
def parties(ledger: Ledger) -> tuple[int, LocalAccount, LocalAccount]:
    provider = ledger.new_participant(PROVIDER)
    enterprise = ledger.new_participant(ENTERPRISE)
    pid = ledger.create_programme([provider.address])
    ledger.issue(pid, enterprise.address, 100_000)
    return pid, enterprise, provider


def _recovered(ledger: Ledger, r: Redemption, provider: str, signature: bytes) -> str:
    digest = consent_digest(r, provider, chain_id=ledger.chain_id, contract=ledger.contract.address)
    return str(Account._recover_hash(digest, signature=signature))


def test_digest_matches_eth_account_and_the_contract(
    ledger: Ledger, parties: tuple[int, LocalAccount, LocalAccount]
) -> None:
    pid, enterprise, provider = parties
    r = ledger.claim(enterprise, pid, 500)
    ours = consent_digest(r, provider.address, chain_id=ledger.chain_id, contract=ledger.contract.address)
    onchain = ledger.contract.functions.consentDigest(r.as_struct(), provider.address).call()
    message = {
        "enterprise": r.enterprise, "provider": provider.address, "programmeId": r.programme_id, "amount": r.amount,
        "invoiceAmount": r.invoice_amount, "invoiceHash": r.invoice_hash, "category": r.category, "nonce": r.nonce,
        "deadline": r.deadline,
    }  # fmt: skip
    fields = [
        "address enterprise", "address provider", "uint256 programmeId", "uint256 amount", "uint256 invoiceAmount",
        "bytes32 invoiceHash", "uint8 category", "uint256 nonce", "uint256 deadline",
    ]  # fmt: skip
    typed = encode_typed_data(
        domain_data={
            "name": "ComputeVoucher",
            "version": "1",
            "chainId": ledger.chain_id,
            "verifyingContract": ledger.contract.address,
        },
        message_types={"Consent": [{"type": f.split()[0], "name": f.split()[1]} for f in fields]},
        message_data=message,
    )
    generic = _hash_eip191_message(typed)
    assert ours == bytes(onchain) == bytes(generic)


def test_one_consent_gives_exactly_one_burn(ledger: Ledger, parties: tuple[int, LocalAccount, LocalAccount]) -> None:
    pid, enterprise, provider = parties
    r = ledger.claim(enterprise, pid, 500)
    sig = ledger.sign(enterprise, r, provider.address)
    ledger.redeem(provider, r, sig)
    with ledger.reverts("InvoiceAlreadyRedeemed", invoiceHash=r.invoice_hash):
        ledger.redeem(provider, r, sig)
    assert ledger.balance(enterprise.address, pid) == 99_500


def test_replayed_nonce_with_a_new_invoice_is_refused(ledger: Ledger, parties):  # type: ignore[no-untyped-def]
    pid, enterprise, provider = parties
    first = ledger.claim(enterprise, pid, 500, nonce=7)
    ledger.redeem(provider, first, ledger.sign(enterprise, first, provider.address))
    second = ledger.claim(enterprise, pid, 500, nonce=7)
    with ledger.reverts("ConsentNonceUsed", enterprise=enterprise.address, nonce=7):
        ledger.redeem(provider, second, ledger.sign(enterprise, second, provider.address))


def test_nonces_are_unordered(ledger: Ledger, parties: tuple[int, LocalAccount, LocalAccount]) -> None:
    pid, enterprise, provider = parties
    for nonce in (900, 3, 2**256 - 1, 4):
        r = ledger.claim(enterprise, pid, 10, nonce=nonce)
        ledger.redeem(provider, r, ledger.sign(enterprise, r, provider.address))
    assert ledger.contract.functions.isNonceUsed(enterprise.address, 5).call() is False


@pytest.mark.parametrize("domain", [{"chain_id": 31337}, {"contract": "0x" + "11" * 20}])
def test_signature_for_another_chain_or_contract_is_refused(ledger: Ledger, parties, domain) -> None:  # type: ignore[no-untyped-def]
    pid, enterprise, provider = parties
    r = ledger.claim(enterprise, pid, 500)
    sig = ledger.sign(enterprise, r, provider.address, **domain)
    signer = _recovered(ledger, r, provider.address, sig)
    assert signer != enterprise.address
    with ledger.reverts("ConsentSignerMismatch", enterprise=enterprise.address, signer=signer):
        ledger.redeem(provider, r, sig)


def test_consent_for_another_provider_is_refused(ledger: Ledger, parties) -> None:  # type: ignore[no-untyped-def]
    pid, enterprise, provider = parties
    thief = ledger.new_participant(PROVIDER)
    ledger.send(ledger.contract.functions.setProgrammeProvider(pid, thief.address, True), ledger.admin)
    r = ledger.claim(enterprise, pid, 500)
    sig = ledger.sign(enterprise, r, provider.address)
    with ledger.reverts("ConsentSignerMismatch", enterprise=enterprise.address,
                        signer=_recovered(ledger, r, thief.address, sig)):  # fmt: skip
        ledger.redeem(thief, r, sig)
    ledger.redeem(provider, r, sig)  # the provider it was meant for still can


def test_consent_past_its_deadline_is_refused(ledger: Ledger, parties) -> None:  # type: ignore[no-untyped-def]
    pid, enterprise, provider = parties
    deadline = ledger.now() + 10
    r = ledger.claim(enterprise, pid, 500, deadline=deadline)
    sig = ledger.sign(enterprise, r, provider.address)
    ledger.travel_to(deadline + 1)
    with ledger.reverts("ConsentExpired", deadline=deadline):
        ledger.redeem(provider, r, sig)


def test_malleated_high_s_signature_is_refused(ledger: Ledger, parties) -> None:  # type: ignore[no-untyped-def]
    pid, enterprise, provider = parties
    r = ledger.claim(enterprise, pid, 500)
    sig = ledger.sign(enterprise, r, provider.address)
    s = int.from_bytes(sig[32:64], "big")
    malleated = sig[:32] + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - sig[64]])  # v: 27 <-> 28
    # Raw ecrecover accepts the malleated form as the same signer; only the contract's low-s rule refuses it.
    digest = consent_digest(r, provider.address, chain_id=ledger.chain_id, contract=ledger.contract.address)
    pub = PublicKey.from_signature_and_message(malleated[:64] + bytes([malleated[64] - 27]), digest, hasher=None)
    assert to_checksum_address(keccak(pub.format(compressed=False)[1:])[-20:]) == enterprise.address
    with ledger.reverts("ConsentSignatureInvalid"):
        ledger.redeem(provider, r, malleated)
    with ledger.reverts("ConsentSignatureInvalid"):
        ledger.redeem(provider, r, sig[:64])  # wrong length
    ledger.redeem(provider, r, sig)


def test_consent_signed_by_someone_else_is_refused(ledger: Ledger, parties) -> None:  # type: ignore[no-untyped-def]
    pid, enterprise, provider = parties
    impostor = Account.create()
    r = ledger.claim(enterprise, pid, 500)
    with ledger.reverts("ConsentSignerMismatch", enterprise=enterprise.address, signer=impostor.address):
        ledger.redeem(provider, r, ledger.sign(impostor, r, provider.address))


@pytest.mark.parametrize(
    "change",
    [
        {"amount": 501}, {"invoice_amount": 10_000}, {"invoice_hash": b"\x99" * 32}, {"category": 1},
        {"nonce": 12345}, {"programme_id": "other"},
    ],
)  # fmt: skip
def test_any_changed_field_breaks_the_consent(ledger: Ledger, parties, change) -> None:  # type: ignore[no-untyped-def]
    pid, enterprise, provider = parties
    if change.get("programme_id") == "other":
        other = ledger.create_programme([provider.address])
        ledger.issue(other, enterprise.address, 1_000)
        change = {"programme_id": other}
    r = ledger.claim(enterprise, pid, 500, invoice_amount=5_000)
    sig = ledger.sign(enterprise, r, provider.address)
    tampered = replace(r, **change)
    with ledger.reverts("ConsentSignerMismatch", enterprise=enterprise.address,
                        signer=_recovered(ledger, tampered, provider.address, sig)):  # fmt: skip
        ledger.redeem(provider, tampered, sig)
    assert ledger.balance(enterprise.address, pid) == 100_000


def test_changed_deadline_breaks_the_consent(ledger: Ledger, parties) -> None:  # type: ignore[no-untyped-def]
    pid, enterprise, provider = parties
    r = ledger.claim(enterprise, pid, 500)
    sig = ledger.sign(enterprise, r, provider.address)
    tampered = replace(r, deadline=r.deadline + 86_400)
    with ledger.reverts("ConsentSignerMismatch", enterprise=enterprise.address):
        ledger.redeem(provider, tampered, sig)
