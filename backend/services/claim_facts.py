"""What a provider's claim is checked against in the database, read in one statement (the claim hot path): the
enterprise, the provider's freeze, the programme's terms, and whether the provider is approved and unrelated."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table, bindparam, exists, literal, select

from backend.models import Participant, Programme, ProgrammeProvider, RelatedParty

_PARTICIPANTS: Table = Participant.__table__  # type: ignore[attr-defined]
_PROGRAMMES: Table = Programme.__table__  # type: ignore[attr-defined]
_LINKS: Table = ProgrammeProvider.__table__  # type: ignore[attr-defined]
_RELATED: Table = RelatedParty.__table__  # type: ignore[attr-defined]


def _query() -> Any:
    """One row; a missing enterprise or programme reads as NULL columns (never as a missing row). Built once, with
    bound parameters: building the aliases and their columns anew cost more than running the statement."""
    enterprise, provider = _PARTICIPANTS.alias("enterprise"), _PARTICIPANTS.alias("provider")
    provider_id: Any = bindparam("provider_id")
    enterprise_id: Any = bindparam("enterprise_id")
    programme_id: Any = bindparam("programme_id")
    return (
        select(
            enterprise.c.kind.label("enterprise_kind"),
            enterprise.c.address.label("enterprise_address"),
            enterprise.c.frozen.label("enterprise_frozen"),
            provider.c.frozen.label("provider_frozen"),
            _PROGRAMMES.c.ratio_bps,
            _PROGRAMMES.c.valid_from,
            _PROGRAMMES.c.valid_until,
            _PROGRAMMES.c.categories,
            exists().where(_LINKS.c.programme_id == programme_id, _LINKS.c.provider_id == provider_id).label("allowed"),
            exists()
            .where(_RELATED.c.enterprise_id == enterprise_id, _RELATED.c.provider_id == provider_id)
            .label("related"),
        )
        .select_from(select(literal(1)).subquery())  # one row, whatever exists
        .outerjoin(enterprise, enterprise.c.id == enterprise_id)
        .outerjoin(provider, provider.c.id == provider_id)
        .outerjoin(_PROGRAMMES, _PROGRAMMES.c.id == programme_id)
    )


QUERY = _query()
