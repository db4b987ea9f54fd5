"""Several worker processes share one database and the same managed keys: nonces never collide."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sqlmodel import Session, select

from backend.models import ChainTx
from tests.api.support import Api, Service, claim_body
from tests.factory import ServiceFactory
from tests.service_process import ServiceProcess

pytestmark = pytest.mark.both_databases


@pytest.fixture(scope="module")
def service(services: ServiceFactory, database_url: str) -> Iterator[Service]:
    yield from services.serve("workers", database_url=database_url)


@pytest.fixture(scope="module")
def workers(service: Service, database_url: str) -> Iterator[str]:
    """Two more worker processes (uvicorn --workers 2) on the same data folder and database."""
    proc = ServiceProcess(service.data_dir, database_url, workers=2).start()
    try:
        yield proc.url
    finally:
        proc.stop()


def test_redemptions_spread_over_three_processes_never_reuse_a_nonce(api: Api, workers: str) -> None:
    providers = [api.provider() for _ in range(4)]
    enterprise = api.enterprise()
    programme = api.programme([p["id"] for p in providers])
    api.fund(enterprise, programme["id"], 100_000_00)
    provider_keys = [api.key_for("provider", p["id"]) for p in providers]
    enterprise_key = api.key_for("enterprise", enterprise["id"])
    urls = [api.service.url, workers]

    def redeem(i: int) -> int:
        with httpx.Client(base_url=urls[i % 2], timeout=60) as http:
            body = claim_body(enterprise["id"], programme["id"], 1_000_00)
            claim = http.post("/v1/redemptions", json=body, headers={"Authorization": f"Bearer {provider_keys[i % 4]}"})
            assert claim.status_code == 201, claim.text
            # Confirm through the other process than the one that took the claim.
            other = urls[(i + 1) % 2]
            done = httpx.post(
                f"{other}/v1/redemptions/{claim.json()['id']}/confirm",
                timeout=60,
                headers={"Authorization": f"Bearer {enterprise_key}"},
            )
            assert done.status_code == 200, done.text
            return int(done.json()["amount"])

    with ThreadPoolExecutor(max_workers=40) as pool:
        amounts = list(pool.map(redeem, range(80)))
    chain = api.service.ctx.chain
    assert chain.programme(programme["id"]).redeemed == sum(amounts) == 80 * 500_00
    with Session(api.service.ctx.engine) as s:
        txs = s.exec(select(ChainTx).where(ChainTx.kind == "redeem")).all()
    by_signer: dict[str, list[int]] = {}
    for t in txs:
        assert t.status == "confirmed"
        by_signer.setdefault(t.signer, []).append(t.nonce)
    for p in providers:
        nonces = sorted(by_signer[p["address"]])
        assert nonces == list(range(len(nonces))) and len(nonces) == 20  # contiguous from 0, none reused
