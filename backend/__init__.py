"""The Compute Voucher Ledger service: managed accounts, issuance, redemption and audit on an EVM chain."""
