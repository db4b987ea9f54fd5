"""The two ledgers (economic, social) and fair competition, per programme and period, as JSON or CSV.

Staff only: enterprises and providers see their own records elsewhere, not the market's."""

from __future__ import annotations

import csv
import io
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, Response

from backend.api.deps import CtxDep, Staff
from backend.api.schemas import MAX_INT, Instant
from backend.api.schemas_reports import (
    CompetitionPublic,
    EconomicPublic,
    Report,
    SocialPublic,
    competition_public,
    economic_public,
    social_public,
)
from backend.audit import reports

router = APIRouter(prefix="/v1/reports", tags=["reports"])

ProgrammeId = Annotated[int | None, Query(gt=0, le=MAX_INT, description="one programme; all when absent")]
From = Annotated[
    Instant | None, Query(alias="from", description="block times from (inclusive, ISO 8601; UTC if naive)")
]
Until = Annotated[Instant | None, Query(description="block times until (exclusive, ISO 8601; UTC if naive)")]
Format = Annotated[Literal["json", "csv"], Query(description="csv: one table, columns section,key,field,value")]
CSV = {200: {"content": {"text/csv": {}}, "description": "the report; as CSV when format=csv"}}


def _respond(report: Report, fmt: str) -> Response:
    if fmt == "csv":
        name = f"{report.meta.report}-report-block-{report.meta.block}.csv"
        headers = {"Content-Disposition": f'attachment; filename="{name}"'}
        return Response(to_csv(report), media_type="text/csv; charset=utf-8", headers=headers)
    return JSONResponse(report.model_dump(mode="json"))


@router.get("/economic", response_model=EconomicPublic, responses=CSV)  # type: ignore[arg-type]
def economic(
    ctx: CtxDep,
    _: Staff,
    programme_id: ProgrammeId = None,
    since: From = None,
    until: Until = None,
    format: Format = "json",
) -> Response:
    r = reports.economic_report(ctx, programme_id=programme_id, since=since, until=until)
    return _respond(economic_public(r), format)


@router.get("/social", response_model=SocialPublic, responses=CSV)  # type: ignore[arg-type]
def social(
    ctx: CtxDep,
    _: Staff,
    programme_id: ProgrammeId = None,
    since: From = None,
    until: Until = None,
    format: Format = "json",
) -> Response:
    r = reports.social_report(ctx, programme_id=programme_id, since=since, until=until)
    return _respond(social_public(r), format)


@router.get("/competition", response_model=CompetitionPublic, responses=CSV)  # type: ignore[arg-type]
def competition(
    ctx: CtxDep,
    _: Staff,
    programme_id: ProgrammeId = None,
    since: From = None,
    until: Until = None,
    format: Format = "json",
) -> Response:
    r = reports.competition_report(ctx, programme_id=programme_id, since=since, until=until)
    return _respond(competition_public(r), format)


def to_csv(report: Report) -> str:
    """section,key,field,value: a row per value of the JSON body (objects give key "", lists their row's key)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(("section", "key", "field", "value"))
    for section, content in report.model_dump(mode="json").items():
        items = content if isinstance(content, list) else [content]
        for item in items:
            row_key = str(item.get("key", "")) if isinstance(content, list) else ""
            for name, value in item.items():
                if name != "key":
                    writer.writerow((section, row_key, name, _cell(value)))
    return out.getvalue()


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
