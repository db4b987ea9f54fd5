"""Named crash points for fault tests: with VOUCHER_CRASH_AT=<point> in its environment, the process kills
itself (SIGKILL, as a power cut would) the first time it reaches that point. Unset, a point costs a compare."""

from __future__ import annotations

import os
import signal

_ARMED = os.environ.get("VOUCHER_CRASH_AT") or None


def crash_point(name: str) -> None:
    if _ARMED is not None and name == _ARMED:
        os.kill(os.getpid(), signal.SIGKILL)
