"""Test helpers for the API: an authenticated client, factories for participants, programmes, vouchers, and the
redemption claims made against them."""

from __future__ import annotations

import itertools
import os
import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlmodel import Session, SQLModel, func, select

from backend.credit_code import with_check
from backend.models import ChainTx
from backend.services.context import Context

_seq = itertools.count(1)


@dataclass
class Service:
    url: str
    data_dir: Path
    ctx: Context
    admin_key: str
    logs: list[str] = field(default_factory=list)

    def row_counts(self) -> dict[str, int]:
        """Rows per table: a refused request must leave every count as it was."""
        with Session(self.ctx.engine) as s:
            return {
                t.name: int(s.exec(select(func.count()).select_from(t)).one()) for t in SQLModel.metadata.sorted_tables
            }

    def tx_count(self, kind: str | None = None) -> int:
        with Session(self.ctx.engine) as s:
            q = select(func.count()).select_from(ChainTx)
            if kind is not None:
                q = q.where(ChainTx.kind == kind)
            return int(s.exec(q).one())


def credit_code() -> str:
    return with_check("91" + "".join(random.choice("0123456789") for _ in range(15)))


class Api:
    """An httpx client on the service; `as_(key)` gives the same client speaking with another API key."""

    def __init__(self, service: Service, key: str | None = None) -> None:
        self.service = service
        self.key = key or service.admin_key
        self.http = httpx.Client(base_url=service.url, timeout=60)

    def __enter__(self) -> Api:
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()

    def as_(self, key: str) -> Api:
        other = Api.__new__(Api)
        other.service, other.key, other.http = self.service, key, self.http
        return other

    def _headers(self, idempotency_key: str | None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.key}"}
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        return headers

    def get(self, path: str, **params: Any) -> httpx.Response:
        return self.http.get(path, params=params, headers=self._headers(None))

    def post(self, path: str, body: dict[str, Any] | None = None, *, key: str | None = None) -> httpx.Response:
        return self.http.post(path, json=body, headers=self._headers(key))

    def post_alone(self, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        """A POST on a connection of its own: one httpx pool shared by 200 threads at once raced on a socket
        another thread had closed (EBADF), a fault of the test's client, not of the service."""
        with httpx.Client(base_url=self.service.url, timeout=60) as http:
            return http.post(path, json=body, headers=self._headers(None))

    def ok(self, response: httpx.Response, status: int = 200) -> Any:
        assert response.status_code == status, f"{response.status_code}: {response.text}"
        return response.json()

    # -- factories (as admin unless said otherwise) ---------------------------------------------
    def chain_time(self) -> int:
        return int(self.ok(self.get("/v1/health"))["chain_time"])

    def enterprise(self, **fields: Any) -> dict[str, Any]:
        body = {
            "name": f"Enterprise {next(_seq)}",
            "credit_code": credit_code(),
            "region_code": "131000",
            "industry": "software",
            "size": "small",
            **fields,
        }
        return self.ok(self.post("/v1/participants/enterprises", body), 201)  # type: ignore[no-any-return]

    def provider(self, **fields: Any) -> dict[str, Any]:
        body = {"name": f"Provider {next(_seq)}", "credit_code": credit_code(), "categories": ["intelligent"], **fields}
        return self.ok(self.post("/v1/participants/providers", body), 201)  # type: ignore[no-any-return]

    def programme(self, provider_ids: list[int], **fields: Any) -> dict[str, Any]:
        now = self.chain_time()
        body = {
            "name": f"Programme {next(_seq)}",
            "ratio_bps": 5000,
            "budget": 10_000_000_00,
            "cap_per_enterprise": 1_000_000_00,
            "valid_from": _iso(now - 60),
            "valid_until": _iso(now + 365 * 86400),
            "categories": ["intelligent", "general"],
            "provider_ids": provider_ids,
            **fields,
        }
        return self.ok(self.post("/v1/programmes", body), 201)  # type: ignore[no-any-return]

    def key_for(self, role: str, participant_id: int | None = None) -> str:
        body = {"role": role, "participant_id": participant_id}
        return str(self.ok(self.post("/v1/api-keys", body), 201)["secret"])

    def issuer(self) -> Api:
        return self.as_(self.key_for("issuer"))

    def fund(self, enterprise: dict[str, Any], programme_id: int, amount: int) -> dict[str, Any]:
        """Applies as the enterprise and approves as an issuer: the enterprise then holds `amount`."""
        mine = self.as_(self.key_for("enterprise", enterprise["id"]))
        app = self.ok(
            mine.post(
                "/v1/applications", {"programme_id": programme_id, "amount": amount, "purpose": "model training"}
            ),
            201,
        )
        return self.ok(self.issuer().post(f"/v1/applications/{app['id']}/approve", {}))  # type: ignore[no-any-return]

    def redeem(
        self,
        provider: dict[str, Any],
        enterprise: dict[str, Any],
        programme_id: int,
        invoice_amount: int,
        *,
        category: str = "intelligent",
        confirm: bool = True,
    ) -> dict[str, Any]:
        """The provider claims against a fresh invoice; the enterprise confirms (the burn) or refuses."""
        body = claim_body(enterprise["id"], programme_id, invoice_amount, category=category)
        claim = self.ok(self.as_(self.key_for("provider", provider["id"])).post("/v1/redemptions", body), 201)
        mine = self.as_(self.key_for("enterprise", enterprise["id"]))
        if confirm:
            return self.ok(mine.post(f"/v1/redemptions/{claim['id']}/confirm"))  # type: ignore[no-any-return]
        return self.ok(mine.post(f"/v1/redemptions/{claim['id']}/refuse", {"reason": "not ours"}))  # type: ignore[no-any-return]


@contextmanager
def mining_stopped(api: Api) -> Iterator[None]:
    """The devnet mines nothing while the block runs (transactions wait in its pool), then one block."""
    rpc = api.service.ctx.chain.rpc
    rpc.call("evm_setAutomine", [False])
    try:
        yield
    finally:
        rpc.call("evm_setAutomine", [True])
        rpc.call("evm_mine", [])


def invoice_number() -> str:
    return f"FP{os.urandom(8).hex().upper()}"


def claim_body(enterprise_id: int, programme_id: int, invoice_amount: int = 20_000_00, **fields: Any) -> dict[str, Any]:
    """A provider's redemption claim: a fresh invoice in the `intelligent` category unless `fields` say otherwise."""
    return {
        "enterprise_id": enterprise_id,
        "programme_id": programme_id,
        "invoice_number": invoice_number(),
        "invoice_amount": invoice_amount,
        "category": "intelligent",
        **fields,
    }


@dataclass
class Funded:
    """A programme, an enterprise funded in it and the programme's providers, each speaking with a key of its own."""

    api: Api
    programme: dict[str, Any]
    enterprise: dict[str, Any]
    providers: list[dict[str, Any]]
    as_enterprise: Api
    as_providers: list[Api]

    @property
    def provider(self) -> dict[str, Any]:
        return self.providers[0]

    @property
    def as_provider(self) -> Api:
        return self.as_providers[0]

    def claim(self, by: int = 0, **fields: Any) -> httpx.Response:
        """A claim by the `by`-th provider (see `claim_body`: a ¥20,000 invoice unless told otherwise)."""
        body = claim_body(self.enterprise["id"], self.programme["id"], **fields)
        return self.as_providers[by].post("/v1/redemptions", body)

    def confirm(self, claim: dict[str, Any]) -> httpx.Response:
        return self.as_enterprise.post(f"/v1/redemptions/{claim['id']}/confirm")

    def redeem(self, invoice_amount: int = 20_000_00, **fields: Any) -> dict[str, Any]:
        """A claim that the enterprise confirms: the voucher burnt on chain. The confirmed redemption."""
        claim = self.api.ok(self.claim(invoice_amount=invoice_amount, **fields), 201)
        done: dict[str, Any] = self.api.ok(self.confirm(claim))
        assert done["status"] == "confirmed", done
        return done


def funded(api: Api, *, providers: int = 1, amount: int = 100_000_00) -> Funded:
    """A new programme with `providers` new providers, and a new enterprise holding `amount` in it."""
    made = [api.provider() for _ in range(providers)]
    enterprise = api.enterprise()
    programme = api.programme([p["id"] for p in made])
    api.fund(enterprise, programme["id"], amount)
    return Funded(
        api,
        programme,
        enterprise,
        made,
        api.as_(api.key_for("enterprise", enterprise["id"])),
        [api.as_(api.key_for("provider", p["id"])) for p in made],
    )


def _iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()
