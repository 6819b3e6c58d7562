"""The Dagster instance every command of ours uses, so that the path a new user takes is the
fast one: runs, event log and schedules in PostgreSQL on the warehouse's server (a database of
its own, created when missing), and Dagster's batched event writes on in every process.

Measured here (90 days x 25 hosts), the same backfill took 11-12 s on this instance and
59-64 s on the SQLite storage a bare DAGSTER_HOME gives; SQLite is used only when asked for.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import psycopg
import yaml

from carbon_pipeline import BATCHING
from carbon_pipeline.database_url import DatabaseUrl, DatabaseUrlError
from carbon_pipeline.secrets import mask_secrets

log = logging.getLogger(__name__)

_PACKAGED = Path(__file__).resolve().parent / "dagster.yaml"
TEMPLATE = (
    _PACKAGED
    if _PACKAGED.exists()
    else Path(__file__).resolve().parents[1] / "deploy" / "dagster.yaml"
)
SQLITE_COST = (
    "the Dagster instance stores runs and events in SQLite: measured here, a backfill is "
    "5-10x slower than on PostgreSQL (90 days x 25 hosts: 59-64 s against 11-12 s), and "
    "parallel runs contend for one file"
)


class InstanceError(RuntimeError):
    """The Dagster instance could not be set up; says what to set."""


def default_home() -> Path:
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "carbon-pipeline" / "dagster"


def dagster_postgres_url(url: str) -> str:
    """dagster-postgres needs psycopg2 (it binds NOTIFY parameters client-side); SQLAlchemy
    2.1 maps a bare postgresql:// to psycopg 3, so name the driver. The password may hold any
    character (see database_url)."""
    parsed = _parse(url, "DAGSTER_POSTGRES_URL")
    if parsed.scheme in ("postgres", "postgresql"):
        parsed = parsed.with_(scheme="postgresql+psycopg2")
    return parsed.render()


def instance_database_url(database_url: str) -> str:
    """The instance's database beside the warehouse: same server and credentials, database
    `<warehouse>_dagster`."""
    parsed = _parse(database_url, "DATABASE_URL")
    if not parsed.database:
        raise InstanceError("DATABASE_URL must be a postgresql:// URL naming a database")
    return parsed.with_(
        scheme="postgresql+psycopg2", database=f"{parsed.database}_dagster"
    ).render()


def _parse(url: str, setting: str) -> DatabaseUrl:
    try:
        return DatabaseUrl.parse(url)
    except DatabaseUrlError as exc:
        raise InstanceError(f"{setting}: {exc}") from None


def ensure_database(url: str) -> None:
    """Create the database of a postgresql URL if it does not exist (needs CREATEDB)."""
    parsed = _parse(url, "DAGSTER_POSTGRES_URL").with_(scheme="postgresql")
    name = parsed.database
    try:
        with psycopg.connect(parsed.render(), connect_timeout=10):
            return
    except psycopg.OperationalError as exc:
        if "does not exist" not in str(exc):
            raise InstanceError(
                f"cannot reach the Dagster instance's database {name!r}: {mask_secrets(str(exc))}"
            ) from None
    maintenance = parsed.with_(database="postgres").render()
    try:
        with psycopg.connect(maintenance, autocommit=True, connect_timeout=10) as conn:
            conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(name)))
    except psycopg.errors.DuplicateDatabase:
        pass  # created meanwhile by another process
    except psycopg.Error as exc:
        raise InstanceError(
            f"could not create the Dagster instance's database {name!r} "
            f"({mask_secrets(str(exc))}); create it, or set DAGSTER_POSTGRES_URL to one that exists"
        ) from None
    log.info("created the Dagster instance's database %s", name)


def uses_postgres(config_file: Path) -> bool:
    config = yaml.safe_load(config_file.read_text()) or {}
    storage = config.get("storage") or {}
    return "postgres" in storage or "postgres" in str(config.get("run_storage", ""))


def prepare(
    home: Path | None = None, *, sqlite: bool = False, postgres_url: str | None = None
) -> Path:
    """Set up DAGSTER_HOME for this process and its children and return it.

    The home is `home`, else $DAGSTER_HOME, else ~/.local/state/carbon-pipeline/dagster. A
    home without dagster.yaml gets the production instance (deploy/dagster.yaml: PostgreSQL
    storage, run queue, retries), or SQLite storage with `sqlite`. An existing dagster.yaml is
    kept as it is; one on SQLite storage is warned about. The instance's PostgreSQL is
    `postgres_url`, else DAGSTER_POSTGRES_URL, else a database beside DATABASE_URL's."""
    home = Path(home or os.environ.get("DAGSTER_HOME") or default_home()).resolve()
    home.mkdir(parents=True, exist_ok=True)
    config_file = home / "dagster.yaml"
    if not config_file.exists():
        text = TEMPLATE.read_text()
        if sqlite:
            config = yaml.safe_load(text)
            for part in ("run_storage", "event_log_storage", "schedule_storage"):
                config.pop(part, None)
            config["storage"] = {"sqlite": {"base_dir": str(home / "storage")}}
            text = "# SQLite storage, as asked for: " + SQLITE_COST + "\n" + yaml.safe_dump(config)
        config_file.write_text(text)
    os.environ["DAGSTER_HOME"] = str(home)
    for name, value in BATCHING.items():
        os.environ.setdefault(name, value)
    if not uses_postgres(config_file):
        print(f"warning: {SQLITE_COST} ({config_file})", file=sys.stderr)
        return home
    if sqlite:
        raise InstanceError(
            f"{config_file} has PostgreSQL storage: use another DAGSTER_HOME for SQLite"
        )
    url = postgres_url or os.environ.get("DAGSTER_POSTGRES_URL")
    if not url:
        if not os.environ.get("DATABASE_URL"):
            raise InstanceError(
                "set DATABASE_URL (the instance's database goes beside it) or DAGSTER_POSTGRES_URL"
            )
        url = instance_database_url(os.environ["DATABASE_URL"])
    url = dagster_postgres_url(url)
    ensure_database(url)
    os.environ["DAGSTER_POSTGRES_URL"] = url
    return home
