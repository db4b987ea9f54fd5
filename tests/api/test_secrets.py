"""Secrets stay secret: a canary API key and a managed private key never show in logs, responses or errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlmodel import Session, select

from backend.models import ManagedKey
from tests.api.support import Api, credit_code, invoice_number


def _key_of(api: Api, address: str) -> str:
    return api.service.ctx.keys._account(address).key.hex()  # the test's own peek, to know what to look for


def test_canaries_never_leak(api: Api, tmp_path: Path) -> None:
    canary_api_key = api.key_for("issuer")
    provider, enterprise = api.provider(), api.enterprise()
    canary_private_key = _key_of(api, enterprise["address"])
    programme = api.programme([provider["id"]])
    api.fund(enterprise, programme["id"], 10_000_00)
    as_provider = api.as_(api.key_for("provider", provider["id"]))
    as_enterprise = api.as_(api.key_for("enterprise", enterprise["id"]))

    seen: list[str] = []
    # The secrets sent where they do not belong: validation errors must not echo them back.
    for value in (canary_api_key, canary_private_key, "0x" + canary_private_key):
        seen.append(api.post("/v1/participants/enterprises", {"name": value * 20, "credit_code": value}).text)
        seen.append(
            api.post(
                "/v1/participants/enterprises", {"name": "x", "credit_code": credit_code(), "unexpected": value}
            ).text
        )
        seen.append(api.post("/v1/programmes", {"name": value, "ratio_bps": value}).text)
        seen.append(api.as_(value + "x").get("/v1/programmes").text)  # a mangled key in the header
        seen.append(api.post("/v1/api-keys", {"role": value}).text)
    # The managed key at work: the enterprise consents (its key signs) and a refusal is decoded.
    body = {
        "enterprise_id": enterprise["id"],
        "programme_id": programme["id"],
        "invoice_number": invoice_number(),
        "invoice_amount": 2_000_00,
        "category": "intelligent",
    }
    claim = api.ok(as_provider.post("/v1/redemptions", body), 201)
    seen.append(as_enterprise.post(f"/v1/redemptions/{claim['id']}/confirm").text)
    seen.append(as_provider.post("/v1/redemptions", body).text)  # reused invoice: an error path
    seen.append(api.get("/v1/participants").text)
    seen.append(api.get("/v1/api-keys").text)
    seen.append(api.http.get("/openapi.json").text)
    assert any("invalid_input" in s for s in seen) and any("invoice_already_redeemed" in s for s in seen)

    haystacks = {
        "responses": "\n".join(seen),
        "logs": "\n".join(api.service.logs),
        "keystore repr": repr(api.service.ctx.keys),
        "context repr": repr(api.service.ctx),
    }
    for where, text in haystacks.items():
        for secret in (canary_api_key, canary_private_key):
            assert secret not in text, f"a secret leaked into {where}"
            assert secret.lower() not in text.lower(), f"a secret leaked into {where}"


def test_database_holds_only_ciphertexts_and_digests(api: Api) -> None:
    canary_api_key = api.key_for("supervisor")
    enterprise = api.enterprise()
    private_key = bytes.fromhex(_key_of(api, enterprise["address"]))
    with Session(api.service.ctx.engine) as s:
        row = s.exec(select(ManagedKey).where(ManagedKey.address == enterprise["address"])).one()
    assert private_key not in row.ciphertext
    url = api.service.ctx.engine.url
    assert url.get_backend_name() == "sqlite"  # this module runs on SQLite: read the file itself, WAL included
    db_file = Path(str(url.database))
    raw = b"".join(p.read_bytes() for p in db_file.parent.glob(db_file.name + "*"))
    assert enterprise["address"].encode() in raw  # the right file
    assert private_key not in raw and private_key.hex().encode() not in raw
    assert canary_api_key.encode() not in raw


def test_failed_startup_messages_hold_no_secrets(tmp_path: Path) -> None:
    from backend.settings import Settings

    weak = "00" * 32
    with pytest.raises(ValueError) as info:
        Settings(data_dir=tmp_path, master_key=SecretStr(weak))
    assert weak not in str(info.value)
