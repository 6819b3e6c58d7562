"""A Dagster home for the demo, tests and benchmark: deploy/dagster.yaml on a local database."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

INSTANCE_YAML = Path(__file__).resolve().parents[2] / "deploy" / "dagster.yaml"


def prepare_dagster_home(home: Path, postgres_url: str) -> Path:
    """Put the production instance configuration in `home` and point it at postgres_url
    (both through the environment, as a deployment would)."""
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(INSTANCE_YAML, home / "dagster.yaml")
    os.environ["DAGSTER_HOME"] = str(home)
    os.environ["DAGSTER_POSTGRES_URL"] = dagster_postgres_url(postgres_url)
    return home


def dagster_postgres_url(url: str) -> str:
    """dagster-postgres needs psycopg2 (it binds NOTIFY parameters client-side); SQLAlchemy
    2.1 maps a bare postgresql:// to psycopg 3, so name the driver."""
    scheme, sep, rest = url.partition("://")
    return f"postgresql+psycopg2://{rest}" if scheme in ("postgres", "postgresql") else url
