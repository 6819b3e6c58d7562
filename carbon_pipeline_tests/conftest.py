"""Real services for the tests: a fresh PostgreSQL database, a Prometheus loaded with the test
fleet's history, a local Carbon Intensity API, and the registry through mongomock."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path

import dagster as dg
import pandas as pd
import psycopg
import pytest

# Before the package is imported: partitions from 2023 (the real intensity record's year),
# and asset retries that retry at once, so that failure tests stay quick.
os.environ.setdefault("CARBON_PIPELINE_START", "2023-01-01T00:00Z")
os.environ.setdefault("CARBON_PIPELINE_ASSET_RETRIES", "1")
os.environ.setdefault("CARBON_PIPELINE_ASSET_RETRY_DELAY_SECONDS", "0")

from carbon_pipeline.definitions import ASSETS, CHECKS
from carbon_pipeline.demo import postgres
from carbon_pipeline.demo.intensity_server import IntensityServer, synthetic_periods
from carbon_pipeline.demo.loader import load_history, write_registry_seed
from carbon_pipeline.demo.prometheus_server import PrometheusServer, ensure_installed
from carbon_pipeline.partitions import range_tags  # noqa: E402
from carbon_pipeline.resources import (
    CarbonIntensityResource,
    PipelineSettings,
    PowerModelResource,
    PrometheusResource,
    RegistryResource,
    SitesResource,
    WarehouseResource,
)
from carbon_pipeline_tests.fleet_spec import WINDOW_END, WINDOW_START, build_fleet

# One id per session, which its xdist workers inherit (they start after this is imported):
# every database the session makes is named after it, and pytest_sessionfinish drops them.
TEST_SESSION = os.environ.setdefault("CARBON_TEST_SESSION", uuid.uuid4().hex[:8])
SLOW_LANES = 3


def pytest_sessionfinish(session):
    """The session's databases dropped once, by the controller, after every worker is done:
    each DROP DATABASE waits for a checkpoint, and each worker dropping its own at its end,
    while the others still wrote, took up to 100 s of the session; now the machine is quiet
    and the drops, at once, share their checkpoints."""
    if hasattr(session.config, "workerinput"):  # an xdist worker: the controller drops them
        return
    admin = os.getenv("TEST_ADMIN_DATABASE_URL") or postgres.running_admin_url()
    if admin is None:
        return
    with psycopg.connect(admin, autocommit=True) as conn:
        names = [
            row[0]
            for row in conn.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE ANY(%s)",
                (
                    [
                        f"carbon\\_test\\_{TEST_SESSION}\\_%",
                        f"carbon\\_template\\_{TEST_SESSION}\\_%",
                    ],
                ),
            )
        ]

    def drop(database: str) -> None:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(drop, names))


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items):
    """Work units for pytest-xdist (--dist loadgroup): the slow tests in SLOW_LANES lanes of
    about equal length (longest first, each to the shortest lane, by their marker's seconds),
    one worker each: they start daemons, webservers and run workers, and more of them at once
    on two cores only slows them all. The other tests go by module, so that a module's
    fixtures are built once."""
    lanes: list[list] = [[] for _ in range(SLOW_LANES)]
    seconds = [0.0] * SLOW_LANES
    slow = [(item, item.get_closest_marker("slow")) for item in items]
    slow = [(item, mark.kwargs.get("seconds", 30)) for item, mark in slow if mark]
    for item, length in sorted(slow, key=lambda pair: -pair[1]):
        lane = seconds.index(min(seconds))
        seconds[lane] += length
        lanes[lane].append(item)
        item.add_marker(pytest.mark.xdist_group(f"slow-{lane}"))
    quick = [item for item in items if not item.get_closest_marker("slow")]
    for item in quick:
        item.add_marker(pytest.mark.xdist_group(item.module.__name__))
    # The lanes first (--no-loadscope-reorder keeps this order), so that they start at once.
    items[:] = [item for lane in lanes for item in lane] + quick


@pytest.fixture(scope="session")
def admin_url() -> str:
    """A superuser connection to create and drop the tests' databases:
    TEST_ADMIN_DATABASE_URL, else a local server (started if none runs)."""
    return os.getenv("TEST_ADMIN_DATABASE_URL") or postgres.admin_url()


@pytest.fixture(scope="session")
def create_database(admin_url):
    """Factory of fresh databases, migrated (copies of a template migrated once a session:
    copying one takes 0.06 s where migrating takes a second) or, with empty=True, empty;
    all dropped at the end of the session (pytest_sessionfinish)."""
    from carbon_pipeline.resources.warehouse import WarehouseResource, dispose_engines

    template = f"carbon_template_{TEST_SESSION}_{uuid.uuid4().hex[:8]}"
    WarehouseResource(database_url=postgres.fresh_database(admin_url, template)).migrate()
    dispose_engines()  # a template is copied only while nobody is connected to it

    def create(empty: bool = False) -> str:
        name = f"carbon_test_{TEST_SESSION}_{uuid.uuid4().hex[:12]}"
        return postgres.fresh_database(admin_url, name, template=None if empty else template)

    yield create  # dropped by pytest_sessionfinish


@pytest.fixture
def database_url(create_database) -> str:
    return create_database()


@pytest.fixture(autouse=True)
def close_pooled_connections():
    """Each test's databases keep no idle connections after it: a session makes a hundred."""
    yield
    from carbon_pipeline.resources.warehouse import dispose_engines

    dispose_engines()


@pytest.fixture(scope="session")
def fleet():
    return build_fleet()


@pytest.fixture(scope="session")
def prometheus(tmp_path_factory, fleet):
    """A real Prometheus serving the test fleet's history; yields (server, true host-hours)."""
    ensure_installed()
    root = tmp_path_factory.mktemp("prometheus")
    truth = load_history(fleet, WINDOW_START, WINDOW_END, root / "data", root / "work")
    server = PrometheusServer(root / "data").start()
    yield server, truth
    server.stop()


def test_server_periods() -> pd.DataFrame:
    """What the test server serves: a day either side of the fleet's window, like the real
    service's wider record (its forecasts too, for the forecast routes)."""
    return synthetic_periods(WINDOW_START - timedelta(days=1), WINDOW_END + timedelta(days=1))


test_server_periods.__test__ = False  # not a test


@pytest.fixture(scope="session")
def intensity_periods() -> pd.DataFrame:
    return test_server_periods()


@pytest.fixture(scope="session")
def intensity_server(intensity_periods):
    server = IntensityServer(intensity_periods).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def registry_seed(tmp_path_factory, fleet) -> Path:
    return write_registry_seed(fleet, tmp_path_factory.mktemp("registry"))


def local_resources(
    database_url, prometheus, intensity_server, registry_seed, chunk_hours=13
) -> dict:
    """Resources pointing at the local services, the database migrated."""
    server, _ = prometheus
    warehouse = WarehouseResource(database_url=database_url)
    warehouse.migrate()
    return {
        "warehouse": warehouse,
        "prometheus": PrometheusResource(prometheus_url=server.url, retries=0),
        "carbon_intensity_api": CarbonIntensityResource(api_url=intensity_server.url, retries=0),
        "registry": RegistryResource(
            # A distinct URI per seed keeps mongomock's in-memory databases apart.
            mongo_uri="mongomock://localhost",
            database=f"ada_{uuid.uuid4().hex[:8]}",
            seed_dir=str(registry_seed),
        ),
        "power_model": PowerModelResource(),
        "sites": SitesResource(),
        "settings": PipelineSettings(chunk_hours=chunk_hours),
    }


@pytest.fixture
def resources(database_url, prometheus, intensity_server, registry_seed) -> dict:
    """Local resources on a fresh database, in chunks of 13 hours (so that ranges cross them)."""
    return local_resources(database_url, prometheus, intensity_server, registry_seed)


def materialize_range(
    resources: dict, start: datetime, end: datetime, with_freshness: bool = False, **kwargs
):
    """Every asset over [start, end) in one in-process run; with the freshness check, which
    the deployment's runs include, only if asked: it reads no window, and Dagster lists every
    partition since CARBON_PIPELINE_START for it (about half a second a run)."""
    return dg.materialize(
        [*ASSETS, *(CHECKS if with_freshness else [])],
        resources=resources,
        instance=kwargs.pop("instance", None) or dg.DagsterInstance.ephemeral(),
        tags=range_tags(start, end),
        **kwargs,
    )


def read_table(database_url: str, query: str, params=None) -> pd.DataFrame:
    with psycopg.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute("SET TIME ZONE 'UTC'")
        cur.execute(query, params)
        columns = [d.name for d in cur.description]
        return pd.DataFrame(cur.fetchall(), columns=columns)


@pytest.fixture
def pipeline_env(resources, tmp_path, monkeypatch):
    """The environment a deployment sets, pointing at the test services, and the instance
    `carbon-pipeline` makes of it (PostgreSQL beside the warehouse)."""
    from carbon_pipeline import instance

    registry = resources["registry"]
    env = {
        "DATABASE_URL": resources["warehouse"].database_url,
        "PROMETHEUS_URL": resources["prometheus"].prometheus_url,
        "CARBON_INTENSITY_API_URL": resources["carbon_intensity_api"].api_url,
        "MONGO_URI": registry.mongo_uri,
        "MONGO_DATABASE": registry.database,
        "MONGO_SEED_DIR": registry.seed_dir,
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
        "CARBON_PIPELINE_ASSET_RETRIES": "0",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("DAGSTER_POSTGRES_URL", raising=False)  # restored after the test
    instance.prepare()
    env["DAGSTER_POSTGRES_URL"] = os.environ["DAGSTER_POSTGRES_URL"]
    return env


def cli(*args: str) -> subprocess.CompletedProcess:
    """The installed command, in a fresh process that reads the environment like a deployment."""
    command = str(Path(sys.executable).parent / "carbon-pipeline")
    return subprocess.run([command, *args], capture_output=True, text=True, timeout=600)
