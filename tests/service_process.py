"""The service as its own process (uvicorn on `backend.api.main:app`, monitor and event mirror running), so a
test can kill it with SIGKILL at a named crash point and start it again on the same data, or run several worker
processes on one data folder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from backend.chain import devnet
from tests.polling import eventually

ROOT = Path(__file__).resolve().parents[1]


class ServiceProcess:
    def __init__(self, data_dir: Path, database_url: str, *, workers: int = 1, **env: str) -> None:
        self.data_dir, self.database_url, self.workers, self.env = data_dir, database_url, workers, env
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = devnet.free_port()
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self, *, crash_at: str | None = None) -> ServiceProcess:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        env = {**os.environ, **self.env, "VOUCHER_DATA_DIR": str(self.data_dir), "DATABASE_URL": self.database_url}
        env.pop("VOUCHER_CRASH_AT", None)
        if crash_at is not None:
            env["VOUCHER_CRASH_AT"] = crash_at
        log = open(self.data_dir / "service.log", "ab")  # noqa: SIM115  (the child holds it)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "backend.api.main:app", "--host", "127.0.0.1", "--port", str(self.port),
             "--workers", str(self.workers), "--log-level", "warning"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()
        eventually(self._healthy, timeout=60, ignoring=(httpx.HTTPError,), message="the service did not start")
        return self

    def _healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"the service exited with {self.proc.returncode}; see {self.data_dir}/service.log")
        return httpx.get(self.url + "/v1/health", timeout=1).status_code == 200

    def killed(self, timeout: float = 30) -> bool:
        """True once the process has died of SIGKILL (its crash point)."""
        assert self.proc is not None
        try:
            return self.proc.wait(timeout) == -signal.SIGKILL
        except subprocess.TimeoutExpired:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
