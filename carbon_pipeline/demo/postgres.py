"""Find or start a local PostgreSQL for the demo, and give it a fresh database."""

from __future__ import annotations

import getpass
import glob
import shutil
import subprocess
import time

import psycopg

from carbon_pipeline.demo.apt import apt_install

SOCKET_DIR = "/var/run/postgresql"
CANDIDATES = (
    "postgresql://postgres@127.0.0.1:5432/postgres",
    f"postgresql://{getpass.getuser()}@127.0.0.1:5432/postgres",
    f"postgresql:///postgres?host={SOCKET_DIR}",
)


class PostgresSetupError(RuntimeError):
    """No PostgreSQL could be found, installed or started."""


def _reachable(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=3):
            return True
    except psycopg.Error:
        return False


def _run(cmd: list[str]) -> None:
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _start_debian_cluster() -> None:
    """Start (installing first if need be) Debian's cluster and give this user a role."""
    if shutil.which("pg_lsclusters") is None:
        if shutil.which("apt-get") is None:
            raise PostgresSetupError(
                "no PostgreSQL found and apt-get is unavailable: set DATABASE_URL"
            )
        try:
            apt_install("postgresql")
        except subprocess.CalledProcessError as exc:
            raise PostgresSetupError(
                f"could not install Debian's postgresql package: {exc.stderr.strip()[-500:]}"
            ) from exc
    versions = sorted(glob.glob("/etc/postgresql/*/main"))
    if not versions:
        raise PostgresSetupError("PostgreSQL is installed but has no cluster: set DATABASE_URL")
    version = versions[-1].split("/")[3]
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"],
        check=False,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    user = getpass.getuser()
    if user != "postgres":
        subprocess.run(
            [
                "runuser",
                "-u",
                "postgres",
                "--",
                "psql",
                "-qc",
                f"DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{user}') "
                f'THEN CREATE ROLE "{user}" SUPERUSER LOGIN; END IF; END$$;',
            ],
            check=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )


def running_admin_url() -> str | None:
    """A superuser connection to a local server that answers now; None if none does."""
    return next((url for url in CANDIDATES if _reachable(url)), None)


def admin_url() -> str:
    """A superuser connection to a running local server, starting one if none answers."""
    running = running_admin_url()
    if running:
        return running
    _start_debian_cluster()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        running = running_admin_url()
        if running:
            return running
        time.sleep(0.5)
    raise PostgresSetupError("could not reach or start a local PostgreSQL: set DATABASE_URL")


def fresh_database(admin: str, name: str, template: str | None = None) -> str:
    """Drop and re-create database `name` (a copy of `template` if given); its URL."""
    copy = f' TEMPLATE "{template}"' if template else ""
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"{copy}')
    return database_url(admin, name)


def database_url(admin: str, name: str) -> str:
    """The URL of database `name` on the server of `admin`."""
    if "?" in admin:  # socket form: postgresql:///postgres?host=...
        base, _, query = admin.partition("?")
        return f"{base.rsplit('/', 1)[0]}/{name}?{query}"
    return f"{admin.rsplit('/', 1)[0]}/{name}"
