"""Times survive the database unchanged, whatever time zone the database server is set to."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
import pytest
from sqlmodel import Session, select

from backend.db import init_db, make_engines
from backend.models import ChainEvent, unix_time

pytestmark = pytest.mark.both_databases


def test_a_block_time_reads_back_as_written(database_url: str) -> None:
    if database_url.startswith("postgresql"):
        with psycopg.connect(database_url, autocommit=True) as conn:  # a server far from UTC
            conn.execute(f"ALTER DATABASE \"{database_url.rsplit('/', 1)[1]}\" SET timezone TO 'Asia/Shanghai'")
    engine, _ = make_engines(database_url)
    init_db(engine)
    when = datetime(2026, 11, 27, 23, 30, 5, tzinfo=UTC)
    with Session(engine) as s:
        s.add(ChainEvent(block_number=1, block_hash="0x1", block_time=when, tx_hash="0x2", log_index=0, name="X",
                         args="{}"))  # fmt: skip
        s.commit()
    with Session(engine) as s:
        row = s.exec(select(ChainEvent)).one()
        since = s.exec(select(ChainEvent).where(ChainEvent.block_time >= when)).all()
    engine.dispose()
    assert unix_time(row.block_time) == unix_time(when)
    assert len(since) == 1
