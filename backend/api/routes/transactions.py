"""The service's own transactions, as the pipeline tracks them: signed, confirmed, reverted, replaced or dropped."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, Field

from backend.api.deps import STAFF, CtxDep, require
from backend.services import transactions

router = APIRouter(prefix="/v1/transactions", tags=["audit"])


class TransactionPublic(BaseModel):
    tx_hash: str
    kind: str = Field(description="what it does: redeem, issue, register, ...")
    ref: str = Field(description="the record it serves (a redemption id, application ids, ...)")
    signer: str
    nonce: int
    status: str = Field(description="signed (not yet mined) | confirmed | reverted | replaced | dropped")
    block_number: int | None
    error_code: str | None
    error: str | None
    created_at: datetime
    updated_at: datetime


@router.get("/{tx_hash}", response_model=TransactionPublic, dependencies=[Depends(require(*STAFF))])
def get_transaction(tx_hash: Annotated[str, Path(pattern="^0x[0-9a-fA-F]{64}$")], ctx: CtxDep) -> TransactionPublic:
    row = transactions.get(ctx, tx_hash)
    return TransactionPublic(**row.model_dump(exclude={"id", "raw"}))
