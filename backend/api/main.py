"""The ASGI entry point (`backend.api.main:app`): settings from the environment, context built at start."""

from __future__ import annotations

from backend.api.app import create_app
from backend.audit.mirror import Indexer
from backend.services.context import Context
from backend.services.monitor import Monitor
from backend.services.wiring import build_context
from backend.settings import get_settings


def _make_context() -> Context:
    ctx = build_context(get_settings())
    for name, worker in (("monitor", Monitor(ctx)), ("indexer", Indexer(ctx))):
        worker.start()
        ctx.extras[name] = worker
    return ctx


app = create_app(_make_context, max_body_bytes=get_settings().max_body_bytes)
