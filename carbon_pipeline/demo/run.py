"""`carbon-pipeline demo`: a month of a generated fleet, end to end, on this machine alone."""

from __future__ import annotations

import json
import os
import subprocess
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from carbon_pipeline import instance
from carbon_pipeline.demo import postgres
from carbon_pipeline.demo.fleet import demo_fleet
from carbon_pipeline.demo.intensity_server import IntensityServer, synthetic_periods
from carbon_pipeline.demo.loader import load_history, write_registry_seed
from carbon_pipeline.demo.prometheus_server import PrometheusServer, ensure_installed
from carbon_pipeline.secrets import mask_url

DEMO_START = datetime(2025, 3, 1, tzinfo=UTC)
DEMO_END = datetime(2025, 4, 1, tzinfo=UTC)
DEMO_HOSTS = 36
DEMO_DATABASE = "carbon_demo"


def say(message: str) -> None:
    print(f"[demo] {message}", flush=True)


def _prepare_history(root: Path) -> Path:
    """The demo fleet's history in a TSDB, generated once and reused while unchanged."""
    data = root / "prometheus" / "data"
    marker = root / "prometheus" / "fleet.json"
    spec = {
        "hosts": DEMO_HOSTS,
        "start": DEMO_START.isoformat(),
        "end": DEMO_END.isoformat(),
        "v": 2,  # 2: memory gauges
    }
    if marker.exists() and json.loads(marker.read_text()) == spec and data.exists():
        say(f"reusing the fleet's Prometheus history in {data}")
        return data
    fleet = demo_fleet(DEMO_HOSTS, DEMO_START, DEMO_END)
    say(f"generating {DEMO_HOSTS} hosts x 5-minute node_exporter history for March 2025 ...")
    if data.exists():
        subprocess.run(["rm", "-rf", str(data)], check=True)
    load_history(
        fleet, DEMO_START, DEMO_END, data, root / "prometheus" / "work", slice_hours=24 * 8
    )
    write_registry_seed(fleet, root / "registry")
    marker.write_text(json.dumps(spec))
    return data


@contextmanager
def demo_services(root: Path):
    """Prometheus on the demo history and the intensity server, with the environment the
    pipeline reads pointing at them (and at the demo database and Dagster home)."""
    ensure_installed()
    data = _prepare_history(root)
    prometheus = PrometheusServer(data, log_file=root / "prometheus.log").start()
    intensity = IntensityServer(synthetic_periods(DEMO_START, DEMO_END)).start()
    state = json.loads((root / "state.json").read_text())
    instance.prepare(root / "dagster_home", postgres_url=state["dagster_postgres_url"])
    os.environ.update(
        {
            "DATABASE_URL": state["database_url"],
            "PROMETHEUS_URL": prometheus.url,
            "CARBON_INTENSITY_API_URL": intensity.url,
            "MONGO_URI": "mongomock://localhost",
            "MONGO_SEED_DIR": str(root / "registry"),
            "CARBON_PIPELINE_START": DEMO_START.strftime("%Y-%m-%dT%H:%MZ"),
            "CARBON_PIPELINE_SCHEDULE_STATUS": "STOPPED",
            # The demo's site has a facility overhead, so that the full footprint shows one.
            "CARBON_SITE_PUE": os.environ.get("CARBON_SITE_PUE", "1.4"),
        }
    )
    try:
        yield prometheus, intensity
    finally:
        intensity.stop()
        prometheus.stop()


def run_demo(root: Path, verbose: bool = False) -> int:
    from carbon_pipeline.terminal import quiet

    run_config = quiet(verbose)
    root.mkdir(parents=True, exist_ok=True)
    admin = postgres.admin_url()
    database_url = os.environ.get("DATABASE_URL") or postgres.fresh_database(admin, DEMO_DATABASE)
    dagster_url = postgres.fresh_database(admin, DEMO_DATABASE + "_dagster")
    (root / "state.json").write_text(
        json.dumps({"database_url": database_url, "dagster_postgres_url": dagster_url})
    )
    say(f"warehouse: {mask_url(database_url)}; Dagster instance: {mask_url(dagster_url)}")
    with demo_services(root):
        from dagster import DagsterInstance

        from carbon_pipeline.backfill import STAGES, backfill
        from carbon_pipeline.terminal import RunReporter

        say("backfilling 2025-03-01 .. 2025-04-01 (744 hourly partitions) through Dagster ...")
        with RunReporter(STAGES["sources"]) as reporter:
            results = backfill(
                DEMO_START,
                DEMO_END,
                instance=DagsterInstance.get(),
                run_config=run_config,
                reporter=reporter,
            )
            failed = sum(not r.success for r in results)
            reporter.summary(len(results), failed)
        if failed:
            return 1
    print_report(database_url)
    say("open the Dagster UI on this data:  make demo-ui   (then http://127.0.0.1:3000)")
    return 0


def print_report(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        ada = conn.execute(
            "SELECT total_kwh, total_gco2eq / 1000, full_kwh, full_gco2eq / 1000 "
            "FROM v_usage_total WHERE scope = 'ada'"
        ).fetchone()
        print(
            f"\nWhole platform (ada), March 2025: {ada[0]:,.1f} kWh, {ada[1]:,.1f} kgCO2eq CPU only "
            f"(the seed's footprint); {ada[2]:,.1f} kWh, {ada[3]:,.1f} kgCO2eq in full\n"
        )
        print(
            f"{'project':<10}{'CPU kWh':>10}{'CPU kgCO2eq':>13}{'full kWh':>10}"
            f"{'memory':>9}{'overhead':>10}{'embodied':>10}{'full kgCO2eq':>14}{'regional':>10}"
        )
        for row in conn.execute(
            "SELECT scope_name, total_kwh, total_gco2eq, full_kwh, memory_gco2eq, "
            "overhead_gco2eq, embodied_gco2eq, full_gco2eq, regional_gco2eq + embodied_gco2eq "
            "FROM v_usage_total WHERE scope = 'project' ORDER BY full_gco2eq DESC"
        ):
            name, kwh, grams, full_kwh, *carbon = row
            print(
                f"{name:<10}{kwh:>10,.1f}{grams / 1000:>13,.2f}{full_kwh:>10,.1f}"
                + "".join(
                    f"{c / 1000:>{w},.2f}" for c, w in zip(carbon, (9, 10, 10, 14, 10), strict=True)
                )
            )
        print(
            "  (kgCO2eq; memory, overhead (PUE) and embodied are what the full footprint adds;"
            " regional: the full footprint at the site's own grid)"
        )
        print(f"\n{'top users':<42}{'kWh':>10}{'kgCO2eq':>10}{'car miles':>11}")
        for name, kwh, grams in conn.execute(
            "SELECT user_name, busy_kwh + idle_kwh, busy_gco2eq + idle_gco2eq "
            "FROM v_user_total ORDER BY 3 DESC LIMIT 10"
        ):
            print(f"{name[:41]:<42}{kwh:>10,.1f}{grams / 1000:>10,.2f}{grams / 400:>11,.1f}")
        print()


def run_ui(root: Path, port: int = 3000, verbose: bool = False) -> int:
    """The Dagster UI (webserver + daemon) on the demo's data, with its services running."""
    from carbon_pipeline.ui import serve

    if not (root / "state.json").exists():
        say("run the demo first: make demo")
        return 1
    with demo_services(root):
        return serve(port=port, verbose=verbose, home=root / "dagster_home")
