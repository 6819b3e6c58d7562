"""A throw-away PostgreSQL of the tests' own that checks passwords (SCRAM), from Debian's
binaries: the machine's server trusts every local login, so only this one can tell whether a
password arrived intact."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import quote

import psycopg

from carbon_pipeline.demo.prometheus_server import free_port

SUPERUSER_PASSWORD = "superuser-password"


def _binary(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}")) or [shutil.which(name)]
    if not found[-1]:
        raise RuntimeError(f"PostgreSQL's {name} is not installed")
    return found[-1]


class PrivatePostgres:
    def __init__(self, _unused: Path | None = None):
        # Under /tmp, not pytest's 0700 folders: the server runs as `postgres` when we are root.
        self.root = Path(tempfile.mkdtemp(prefix="carbon-scram-"))
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"

    def _run(self, *command: str) -> None:
        if os.geteuid() == 0:  # initdb refuses root
            command = ("runuser", "-u", "postgres", "--", *command)
        subprocess.run(command, check=True, capture_output=True, timeout=60)

    def start(self) -> PrivatePostgres:
        (self.root / "pw").write_text(SUPERUSER_PASSWORD)
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
            shutil.chown(self.root / "pw", "postgres")
        data = self.root / "data"
        self._run(
            _binary("initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "-A",
            "scram-sha-256",
            f"--pwfile={self.root / 'pw'}",
        )
        self._run(
            _binary("pg_ctl"),
            "-D",
            str(data),
            "-w",
            "-l",
            str(self.root / "log"),
            "-o",
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root}",
            "start",
        )
        return self

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres:{quote(SUPERUSER_PASSWORD)}@{self.address}/{database}"

    def execute(self, statement: str) -> None:
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(statement)

    def stop(self) -> None:
        try:
            self._run(_binary("pg_ctl"), "-D", str(self.root / "data"), "-m", "immediate", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
