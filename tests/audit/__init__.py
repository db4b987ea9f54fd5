"""Tests of the independent audit: `voucher audit verify`."""
