"""A Postgres-backed Dagster deployment for real: the daemon processes a backfill launched
through the GraphQL mutation the UI sends, and re-executes only what failed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import requests

from carbon_pipeline.api.app import graphql_launcher
from carbon_pipeline.instance import dagster_postgres_url
from carbon_pipeline.tables import STAGE_TABLES
from carbon_pipeline_tests import expected
from carbon_pipeline_tests.conftest import read_table
from carbon_pipeline_tests.fleet_spec import t

pytestmark = pytest.mark.daemon
REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

LAUNCH = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
  }
}"""
REEXECUTE = """
mutation Reexecute($params: ReexecutionParams!) {
  reexecutePartitionBackfill(reexecutionParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
  }
}"""
ASSETS = [table for tables in STAGE_TABLES.values() for table in tables]


@pytest.fixture
def start_deployment(resources, create_database, tmp_path):
    """Starts dagster-daemon on a Postgres-backed instance (deploy/dagster.yaml), with the
    environment of a deployment on the test services (overridable); returns that env."""
    daemons = []

    def start(command: tuple[str, ...] = ("dagster-daemon", "run"), **overrides: str) -> dict:
        registry = resources["registry"]
        home = tmp_path / f"dagster_home{len(daemons)}"
        home.mkdir()
        (home / "dagster.yaml").write_text((REPO / "deploy" / "dagster.yaml").read_text())
        env = {
            **os.environ,
            "DAGSTER_HOME": str(home),
            "DAGSTER_POSTGRES_URL": dagster_postgres_url(create_database(empty=True)),
            "DATABASE_URL": resources["warehouse"].database_url,
            "PROMETHEUS_URL": resources["prometheus"].prometheus_url,
            "CARBON_INTENSITY_API_URL": resources["carbon_intensity_api"].api_url,
            "CARBON_INTENSITY_ON_MISSING": "fail",
            "MONGO_URI": registry.mongo_uri,
            "MONGO_DATABASE": registry.database,
            "MONGO_SEED_DIR": registry.seed_dir,
            "CARBON_PIPELINE_BACKFILL_HOURS_PER_RUN": "4",
            "CARBON_PIPELINE_ASSET_RETRIES": "0",
            "CARBON_PIPELINE_SCHEDULE_STATUS": "STOPPED",
            **overrides,
        }
        log = open(tmp_path / f"daemon{len(daemons)}.log", "wb")  # noqa: SIM115
        daemon = subprocess.Popen(
            [str(BIN / command[0]), *command[1:], "-w", "workspace.yaml"],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        daemons.append((daemon, log))
        # This process reads the same instance.
        os.environ["DAGSTER_HOME"], os.environ["DAGSTER_POSTGRES_URL"] = (
            env["DAGSTER_HOME"],
            env["DAGSTER_POSTGRES_URL"],
        )
        return env

    yield start
    for daemon, log in daemons:
        # Their whole process group (a daemon's code servers, `dagster dev`'s webserver and
        # daemon): `dagster dev` can take a minute to stop on a busy machine, and how long
        # Dagster takes to shut down is not what these tests check.
        for stop, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 30)):
            try:
                os.killpg(daemon.pid, stop)
            except ProcessLookupError:
                break  # the group is gone
            try:
                daemon.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        log.close()


@pytest.fixture
def deployment(start_deployment):
    return start_deployment()


def graphql(env: dict, query: str, variables: dict) -> dict:
    done = subprocess.run(
        [
            str(BIN / "dagster-graphql"),
            "-w",
            "workspace.yaml",
            "-t",
            query,
            "-v",
            json.dumps(variables),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    # The code server it starts logs to stdout too; the answer is the JSON line.
    answer = next(line for line in done.stdout.splitlines() if line.startswith("{"))
    return json.loads(answer)["data"]


def wait_for(
    instance: dg.DagsterInstance, backfill_id: str, runs_expected: int = 0, timeout: float = 300
) -> list[dg.DagsterRun]:
    """The backfill's runs once it has finished and none of them is still going; or, given
    `runs_expected`, once that many have finished (the backfill daemon marks the backfill
    finished only on its next iteration, up to 30 s later)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        backfill = instance.get_backfill(backfill_id)
        runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/backfill": backfill_id}))
        finished = runs and all(r.is_finished for r in runs)
        if finished and (
            len(runs) == runs_expected
            or backfill.status.value.startswith(("COMPLETED", "FAILED", "CANCELED"))
        ):
            return runs
        time.sleep(2)
    raise AssertionError(f"backfill {backfill_id} still {backfill.status} after {timeout} s")


def ada_hours(database_url: str) -> list[int]:
    frame = read_table(database_url, "SELECT timestamp_utc FROM fact_usage_ada ORDER BY 1")
    return pd.to_datetime(frame["timestamp_utc"], utc=True).dt.hour.tolist()


@pytest.mark.slow(seconds=130)
def test_ui_backfill_runs_in_chunks_and_reexecutes_only_what_failed(
    deployment, intensity_server, prometheus, intensity_periods
):
    env = deployment
    instance = dg.DagsterInstance.get()
    # The intensity API fails for 04:00-08:00: the second of two 4-hour runs fails.
    intensity_server.failing_window = (t("2025-03-03T04:00"), t("2025-03-03T08:00"))
    try:
        params = {
            "partitionsByAssets": [
                {
                    "assetKey": {"path": [key]},
                    "partitions": {
                        "range": {"start": "2025-03-03-00:00", "end": "2025-03-03-07:00"}
                    },
                }
                for key in ASSETS
            ],
            "title": "a day's first eight hours",
        }
        launched = graphql(env, LAUNCH, {"params": params})["launchPartitionBackfill"]
        assert launched["__typename"] == "LaunchBackfillSuccess", launched
        runs = wait_for(instance, launched["backfillId"])
    finally:
        intensity_server.failing_window = None

    ranges = sorted(
        (
            r.tags["dagster/asset_partition_range_start"],
            r.tags["dagster/asset_partition_range_end"],
            r.is_success,
        )
        for r in runs
    )
    assert ranges == [
        ("2025-03-03-00:00", "2025-03-03-03:00", True),
        ("2025-03-03-04:00", "2025-03-03-07:00", False),
    ]
    database_url = env["DATABASE_URL"]
    assert ada_hours(database_url) == [0, 1, 2, 3]

    again = graphql(
        env,
        REEXECUTE,
        {"params": {"parentRunId": launched["backfillId"], "strategy": "FROM_FAILURE"}},
    )
    again = again["reexecutePartitionBackfill"]
    assert again["__typename"] == "LaunchBackfillSuccess", again
    rerun = wait_for(instance, again["backfillId"])
    assert [
        (r.tags["dagster/asset_partition_range_start"], r.tags["dagster/asset_partition_range_end"])
        for r in rerun
    ] == [("2025-03-03-04:00", "2025-03-03-07:00")]
    assert all(r.is_success for r in rerun)
    assert ada_hours(database_url) == list(range(8))

    _, truth = prometheus
    host = expected.instance_usage(truth, expected.hourly_intensity(intensity_periods))
    want = (
        host[host["timestamp_utc"] < pd.Timestamp(t("2025-03-03T08:00"))]
        .groupby("timestamp_utc")["busy_kwh"]
        .sum()
    )
    got = read_table(database_url, "SELECT busy_kwh FROM fact_usage_ada ORDER BY timestamp_utc")[
        "busy_kwh"
    ]
    assert got.to_numpy() == pytest.approx(want.to_numpy(), rel=1e-9)


def launch_range(env: dict, start: str, end: str) -> str:
    params = {
        "partitionsByAssets": [
            {"assetKey": {"path": [key]}, "partitions": {"range": {"start": start, "end": end}}}
            for key in ASSETS
        ]
    }
    launched = graphql(env, LAUNCH, {"params": params})["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    return launched["backfillId"]


@pytest.mark.slow(seconds=90)
def test_backfill_chunks_run_in_parallel_and_equal_a_single_run(
    deployment, resources, create_database, intensity_server
):
    from carbon_pipeline_tests.conftest import materialize_range
    from carbon_pipeline_tests.test_pipeline import scope_tables

    instance = dg.DagsterInstance.get()
    # Each chunk run lasts at least this long (the intensity API answers slowly), far longer
    # than the queue daemon takes to launch the next: concurrent runs must overlap in time,
    # while runs that the queue serialised could not.
    intensity_server.delay_seconds = 10.0
    try:
        backfill_id = launch_range(deployment, "2025-03-03-00:00", "2025-03-03-11:00")
        runs = wait_for(instance, backfill_id, runs_expected=3)
    finally:
        intensity_server.delay_seconds = 0.0
    assert len(runs) == 3 and all(r.is_success for r in runs)
    records = {
        r.dagster_run.run_id: r
        for r in instance.get_run_records(filters=dg.RunsFilter(run_ids=[r.run_id for r in runs]))
    }
    spans = sorted((records[r.run_id].start_time, records[r.run_id].end_time) for r in runs)
    overlapping = [a for a, b in zip(spans, spans[1:], strict=False) if b[0] < a[1]]
    assert overlapping, f"no two chunk runs overlapped in time: {spans}"

    single = dict(resources)
    single["warehouse"] = type(resources["warehouse"])(database_url=create_database())
    assert materialize_range(single, t("2025-03-03T00:00"), t("2025-03-03T12:00")).success
    parallel, one_run = (
        scope_tables(deployment["DATABASE_URL"]),
        scope_tables(single["warehouse"].database_url),
    )
    for scope in parallel:
        pd.testing.assert_frame_equal(
            parallel[scope], one_run[scope], check_exact=False, rtol=1e-12
        )


@pytest.mark.slow(seconds=130)
def test_the_hourly_schedule_ticks_and_materialises_the_hour_that_closed(
    start_deployment, resources, tmp_path
):
    from datetime import UTC, datetime, timedelta

    from carbon_pipeline.demo.fleet import Fleet, FleetHost
    from carbon_pipeline.demo.intensity_server import IntensityServer, synthetic_periods
    from carbon_pipeline.demo.loader import load_history
    from carbon_pipeline.demo.prometheus_server import PrometheusServer

    # The daemon only ticks for minutes after it has started: the tick is at least 100 s away
    # (loading the code takes 10-30 s), in this hour or the next; the hour that has closed by
    # then is the one it must materialise. Set-up takes a few seconds of that.
    fire_at = (datetime.now(UTC) + timedelta(seconds=160)).replace(second=0, microsecond=0)
    this_hour = fire_at.replace(minute=0)
    last_hour = this_hour - timedelta(hours=1)
    host = FleetHost(
        "10.9.0.1:9100",
        "IDAaaS",
        "Muon",
        2,
        this_hour - timedelta(hours=3),
        this_hour,
        "constant:0.5",
    )
    load_history(Fleet([host]), host.start, host.end, tmp_path / "live", tmp_path / "work")
    prometheus = PrometheusServer(tmp_path / "live", log_file=tmp_path / "live.log").start()
    periods = synthetic_periods(this_hour - timedelta(days=1), this_hour + timedelta(days=1))
    intensity = IntensityServer(periods).start()
    try:
        assert (fire_at - datetime.now(UTC)).total_seconds() > 60, "set-up took too long"
        env = start_deployment(
            PROMETHEUS_URL=prometheus.url,
            CARBON_INTENSITY_API_URL=intensity.url,
            CARBON_PIPELINE_SCHEDULE_STATUS="RUNNING",
            CARBON_PIPELINE_SCHEDULE_MINUTE=str(fire_at.minute),
            # Only the schedule's run: the catch-up would materialise the week before it.
            CARBON_PIPELINE_CATCHUP_DAYS="0",
        )
        instance = dg.DagsterInstance.get()
        key = last_hour.strftime("%Y-%m-%d-%H:%M")
        deadline = time.monotonic() + 360
        runs = []
        while time.monotonic() < deadline:
            runs = instance.get_runs(
                filters=dg.RunsFilter(tags={"dagster/schedule_name": "hourly_carbon_schedule"})
            )
            if runs and all(r.is_finished for r in runs):
                break
            time.sleep(3)
        assert runs, "the schedule did not tick"
        (run,) = runs
        assert run.is_success and run.tags["dagster/partition"] == key
    finally:
        intensity.stop()
        prometheus.stop()
    ada = read_table(env["DATABASE_URL"], "SELECT * FROM fact_usage_ada")
    assert pd.to_datetime(ada["timestamp_utc"], utc=True).tolist() == [pd.Timestamp(last_hour)]
    # Two cpus at exactly 50%: 3600 busy and 3600 idle CPU seconds, 12 W and 1 W per core.
    (row,) = ada.to_dict("records")
    assert (row["busy_cpu_seconds_total"], row["idle_cpu_seconds_total"]) == (3600.0, 3600.0)
    hour_intensity = expected.hourly_intensity(periods)[pd.Timestamp(last_hour)]
    assert row["busy_gco2eq"] == pytest.approx(12 * 3600 / 3.6e6 * hour_intensity, rel=1e-12)


@pytest.mark.slow(seconds=80)
def test_a_backfill_launched_in_the_browser_succeeds(
    start_deployment, prometheus, intensity_periods
):
    """Playwright drives Debian's Chromium through the UI `dagster dev` serves: Materialize
    all, a partition range, Launch backfill; then the backfill's page until it completes.
    Screenshots land in .ui-screenshots/."""
    from carbon_pipeline.demo.prometheus_server import free_port

    ui = REPO / "carbon_pipeline_tests" / "ui"
    assert (ui / "node_modules" / "playwright-core").exists(), (
        "run `make test` (it installs the UI test's tools)"
    )
    assert Path(os.environ.get("CHROMIUM", "/usr/bin/chromium")).exists(), (
        "Debian's chromium is missing"
    )
    port = free_port()
    env = start_deployment(("dagster", "dev", "-h", "127.0.0.1", "-p", str(port)))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/server_info", timeout=2).ok:
                break
        except requests.RequestException:
            time.sleep(1)
    shots = REPO / ".ui-screenshots"
    shots.mkdir(exist_ok=True)
    done = subprocess.run(
        [
            "node",
            "launch_backfill.mjs",
            f"http://127.0.0.1:{port}",
            "[2025-03-03-00:00...2025-03-03-05:00]",
            str(shots),
        ],
        cwd=ui,
        capture_output=True,
        text=True,
        timeout=420,
    )
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    assert done.returncode == 0, (outcome, done.stderr[-2000:])
    assert outcome["targeted"] == outcome["succeeded"] == 6
    assert {p.name for p in shots.glob("*.png")} >= {
        "1-job.png",
        "2-launch-dialog.png",
        "3-launched.png",
        "4-backfill.png",
    }
    # Two runs (4 hours each at most), and the six hours in the warehouse with their numbers.
    instance = dg.DagsterInstance.get()
    runs = instance.get_runs(
        filters=dg.RunsFilter(tags={"dagster/backfill": outcome["backfillId"]})
    )
    assert len(runs) == 2 and all(r.is_success for r in runs)
    _, truth = prometheus
    host = expected.instance_usage(truth, expected.hourly_intensity(intensity_periods))
    want = (
        host[host["timestamp_utc"] < pd.Timestamp(t("2025-03-03T06:00"))]
        .groupby("timestamp_utc")["busy_gco2eq"]
        .sum()
    )
    got = read_table(
        env["DATABASE_URL"], "SELECT busy_gco2eq FROM fact_usage_ada ORDER BY timestamp_utc"
    )
    assert got["busy_gco2eq"].to_numpy() == pytest.approx(want.to_numpy(), rel=1e-9)


def _processes_of(home: Path) -> list[int]:
    """Pids of the processes whose environment has DAGSTER_HOME=home."""
    marker = f"DAGSTER_HOME={home}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker in (entry / "environ").read_bytes().split(b"\0"):
                pids.append(int(entry.name))
        except OSError:
            pass
    return pids


@pytest.mark.slow(seconds=25)
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_carbon_pipeline_ui_serves_the_asset_graph_takes_the_apis_runs_and_stops_within_seconds(
    pipeline_env, tmp_path, stop
):
    from carbon_pipeline.demo.prometheus_server import free_port

    home = tmp_path / "ui_home"  # a new home: the command makes the instance itself
    env = {**os.environ, "DAGSTER_HOME": str(home), "CARBON_PIPELINE_SCHEDULE_STATUS": "STOPPED"}
    env.pop("DAGSTER_POSTGRES_URL")
    port = free_port()
    ui = subprocess.Popen(
        [str(BIN / "carbon-pipeline"), "ui", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    printed: list[str] = []
    reader = threading.Thread(target=lambda: printed.extend(ui.stdout), daemon=True)
    reader.start()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while not any(f"Dagster UI on {url}" in line for line in printed):
            assert ui.poll() is None, ui.stderr.read()[-2000:]
            assert time.monotonic() < deadline, "the UI never said it was ready"
            time.sleep(0.2)
        assets = None
        while time.monotonic() < deadline and assets is None:
            try:
                answer = requests.post(
                    f"{url}/graphql",
                    json={"query": "{ assetNodes { assetKey { path } } }"},
                    timeout=5,
                ).json()
                assets = {n["assetKey"]["path"][-1] for n in answer["data"]["assetNodes"]}
            except (requests.RequestException, KeyError, TypeError, ValueError):
                time.sleep(1)
        sources = {"prometheus", "carbon_intensity_api", "workspace_registry", "power_model"}
        assert assets >= set(ASSETS) | sources | {"v_usage_total", "v_user_averages"}
        # The API's POST /workspaces/track asks this webserver for an hour's run (docs/api.md).
        tracked = graphql_launcher(url)(t("2025-03-03T05:00"))
        run = requests.post(
            f"{url}/graphql",
            json={
                "query": "query($id: ID!) { runOrError(runId: $id) "
                "{ ... on Run { jobName tags { key value } } } }",
                "variables": {"id": tracked.run_id},
            },
            timeout=10,
        ).json()["data"]["runOrError"]
        assert run["jobName"] == "hourly_carbon_job" and tracked.partition == "2025-03-03-05:00"
        assert {"key": "dagster/partition", "value": "2025-03-03-05:00"} in run["tags"]
        # The instance is PostgreSQL in its own database beside the warehouse, made for us.
        config = (home / "dagster.yaml").read_text()
        assert "postgres" in config and "DAGSTER_POSTGRES_URL" in config
        instance_db = pipeline_env["DATABASE_URL"].rsplit("/", 1)[1] + "_dagster"
        tables = read_table(
            pipeline_env["DATABASE_URL"].rsplit("/", 1)[0] + "/" + instance_db,
            "SELECT count(*) AS n FROM information_schema.tables WHERE table_name = 'runs'",
        )
        assert tables["n"].iloc[0] == 1
        # The webserver, the daemon and whatever they start carry the batching settings.
        started = [p for p in _processes_of(home) if p != ui.pid]
        assert len(started) >= 2
        for pid in started:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            assert b"DAGSTER_EVENT_BATCH_SIZE=10000" in environ, pid
            assert b"DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS=1" in environ, pid
        # It stops everything within seconds by design (SIGTERM, then SIGKILL after 5 s; the
        # benchmark times it); the deadline here only catches a hang.
        ui.send_signal(stop)
        ui.wait(timeout=60)
        reader.join(timeout=10)
    finally:
        if ui.poll() is None:
            ui.kill()
    assert ui.returncode == 0, ui.stderr.read()[-2000:]
    assert printed[-1].strip() == "stopped"
    deadline = time.monotonic() + 10
    while _processes_of(home) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _processes_of(home) == []
