"""Gas ceilings for the hot paths, so a change that makes issuance or redemption dearer shows up here.

Run with `-s` to see the figures. Gas is deterministic, unlike time, so a ceiling is a fair assertion.
"""

from __future__ import annotations

import os

from tests.support import ENTERPRISE, PROVIDER, Ledger

# First issuance to a holder writes two fresh slots (balance, issued-to for the cap).
ISSUE_CEILING = 120_000
BATCH_PER_HOLDER_CEILING = 65_000
# A redemption writes a fresh invoice slot; its consent nonce shares a bitmap word with the enterprise's
# earlier nonces when the service hands them out in sequence (the first in a word pays for the word).
REDEEM_FIRST_CEILING = 120_000
REDEEM_CEILING = 95_000


def test_gas_of_issue_batch_issue_and_redeem_stay_under_ceilings(ledger: Ledger) -> None:
    provider = ledger.new_participant(PROVIDER)
    pid = ledger.create_programme([provider.address])
    first = ledger.new_participant(ENTERPRISE)
    issue_gas = ledger.issue(pid, first.address, 10_000)["gasUsed"]

    holders = [ledger.new_participant(ENTERPRISE).address for _ in range(50)]
    fn = ledger.contract.functions.issueBatch(pid, holders, [1_000] * 50, [os.urandom(32) for _ in holders])
    one = ledger.new_participant(ENTERPRISE).address
    single_batch = ledger.send(
        ledger.contract.functions.issueBatch(pid, [one], [1_000], [os.urandom(32)]), ledger.issuer
    )["gasUsed"]
    batch_gas = ledger.send(fn, ledger.issuer)["gasUsed"]
    per_holder = (batch_gas - single_batch) / 49

    gas = []
    for nonce in range(3):
        r = ledger.claim(first, pid, 1_000, nonce=nonce)
        gas.append(ledger.redeem(provider, r, ledger.sign(first, r, provider.address))["gasUsed"])
    print(f"\ngas: issue {issue_gas}, batch issue {per_holder:.0f} per holder (50 holders), "
          f"redeem {gas[0]} (first nonce in a word) / {gas[2]} (next nonces)")  # fmt: skip
    assert issue_gas < ISSUE_CEILING
    assert per_holder < BATCH_PER_HOLDER_CEILING
    assert gas[0] < REDEEM_FIRST_CEILING
    assert max(gas[1:]) < REDEEM_CEILING
