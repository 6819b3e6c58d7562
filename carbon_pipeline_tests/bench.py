"""The backfill benchmark: `python -m carbon_pipeline_tests.bench [--quick]`.

Builds once (and caches in .bench/) a fleet's 5-minute node_exporter history in a Prometheus
TSDB: 100 hosts x 4 cpus x 4 modes for a year by default, 25 hosts for a month with --quick.
Then, each in a fresh process against a fresh warehouse and a fresh Postgres-backed Dagster
instance, it measures:

  (a) the backfill through Dagster, end to end, broken down by phase, with rows/s and peak RSS;
  (b) the I/O floor: the same Prometheus range queries alone, plus a bare binary COPY of the
      same output rows into empty tables;
  (c) one-partition runs from a cold process (what one run per partition costs), x 8,760;
  (d) Dagster's floor: the same assets, partitions and run shape with bodies that do nothing;

and prints a table, the ratios (a-d)/b and c/a, and a scaling line over hosts x hours.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from carbon_pipeline.tables import (
    CARBON_INTENSITY_HOURLY,
    CARBON_INTENSITY_REGIONAL_HOURLY,
    FACT_USAGE_INSTANCE,
    FACT_USAGE_WORKSPACE,
    HOST_CPU_HOURLY,
    SCOPE_FACTS,
    STAGE_TABLES,
)

REPO = Path(__file__).resolve().parents[1]
MODES = ("user", "system", "idle", "iowait")
# Every table a backfill writes.
OUTPUT_TABLES = tuple(
    spec.name
    for spec in (
        CARBON_INTENSITY_HOURLY,
        CARBON_INTENSITY_REGIONAL_HOURLY,
        HOST_CPU_HOURLY,
        FACT_USAGE_INSTANCE,
        *SCOPE_FACTS.values(),
        FACT_USAGE_WORKSPACE,
    )
)


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def month_start(year: int, month: int) -> datetime:
    return datetime(year + (month - 1) // 12, (month - 1) % 12 + 1, 1, tzinfo=UTC)


# ---- the cached fleet -------------------------------------------------------------------


def fleet_for(hosts: int, start: datetime, end: datetime):
    from carbon_pipeline.demo.fleet import demo_fleet

    return demo_fleet(hosts, start, end, cpus=(4,), modes=MODES, seed=2025)


def cached_tsdb(cache: Path, hosts: int, start: datetime, end: datetime) -> Path:
    """The fleet's history as TSDB blocks, written month by month, built once per shape."""
    from carbon_pipeline.demo.loader import load_history, write_registry_seed

    # The version changes whenever the generated history does (v2: memory gauges).
    folder = cache / f"fleet-v2-{hosts}h-{start:%Y%m%d}-{end:%Y%m%d}"
    if (folder / "complete").exists():
        return folder
    log(
        f"building the TSDB of {hosts} hosts from {start:%Y-%m-%d} to {end:%Y-%m-%d} (once; cached in {folder})"
    )
    if folder.exists():
        subprocess.run(["rm", "-rf", str(folder)], check=True)
    began = time.monotonic()
    fleet = fleet_for(hosts, start, end)
    # promtool holds a whole file in memory (a month of 100 hosts: a few GiB): slices of
    # about 75 k host-hours each.
    slice_hours = max(24, 24 * 31 * 100 // hosts)
    load_history(fleet, start, end, folder / "data", folder / "work", slice_hours=slice_hours)
    write_registry_seed(fleet, folder / "registry")
    (folder / "complete").write_text(json.dumps({"seconds": time.monotonic() - began}))
    log(f"built in {time.monotonic() - began:.0f} s")
    return folder


# ---- measurements, each in its own process ---------------------------------------------


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine_busy_seconds() -> float:
    """CPU-seconds the machine's cores have spent busy since boot (user, nice, system, irq,
    softirq in /proc/stat): a measurement's processes, its PostgreSQL and its Prometheus."""
    user, nice, system, _idle, _iowait, irq, softirq = (
        int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]
    )
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def with_machine_cpu(measure: Callable[[], dict]) -> dict:
    """The measurement, with the CPU-seconds the whole machine spent busy while it ran."""
    before = machine_busy_seconds()
    result = measure()
    return {**result, "machine_cpu_seconds": machine_busy_seconds() - before}


def measure_pipeline(args) -> dict:
    """(a): the backfill through Dagster, as `carbon-pipeline backfill` runs it."""
    import dagster as dg

    from carbon_pipeline import timing
    from carbon_pipeline.backfill import backfill
    from carbon_pipeline.terminal import quiet

    start, end = datetime.fromisoformat(args.start), datetime.fromisoformat(args.end)
    windows = [
        tuple(datetime.fromisoformat(t) for t in window.split("/"))
        for window in args.windows.split(",")
        if window
    ] or [(start, end)]
    timing.reset()
    began = time.perf_counter()
    results = []
    for window_start, window_end in windows:
        results += backfill(
            window_start,
            window_end,
            instance=dg.DagsterInstance.get(),
            hours_per_run=args.hours_per_run,
            run_config=quiet(),
        )
    wall = time.perf_counter() - began
    failed = [r.run_id for r in results if not r.success]
    assert not failed, "a benchmark run failed: " + run_errors(failed[0])
    rows = count_rows(os.environ["DATABASE_URL"])
    return {
        "wall": wall,
        "runs": len(results),
        "phases": timing.totals(),
        "rows": rows,
        "bytes": table_bytes(os.environ["DATABASE_URL"]),
        "peak_rss_mib": peak_rss_mib(),
    }


def run_errors(run_id: str) -> str:
    """The errors of a failed run's steps, from the instance's event log."""
    import dagster as dg

    failures = [
        record.dagster_event.event_specific_data.error.to_string()
        for record in dg.DagsterInstance.get().all_logs(run_id)
        if record.is_dagster_event and record.dagster_event.event_type_value == "STEP_FAILURE"
    ]
    return f"run {run_id}:\n" + "\n".join(failures)[-3000:]


def table_bytes(database_url: str) -> dict:
    """Bytes on disk of every output table, indexes and partitions included."""
    import psycopg

    query = (
        "SELECT coalesce((SELECT sum(pg_total_relation_size(inhrelid)) FROM pg_inherits "
        "WHERE inhparent = %s::regclass), 0) + pg_total_relation_size(%s::regclass)"
    )
    with psycopg.connect(database_url) as conn:
        return {t: int(conn.execute(query, (t, t)).fetchone()[0]) for t in OUTPUT_TABLES}


def count_rows(database_url: str) -> dict:
    import psycopg

    with psycopg.connect(database_url) as conn:
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in OUTPUT_TABLES}


def measure_floor(args) -> dict:
    """(b): the Prometheus queries alone, and a bare binary COPY of the output rows."""
    import psycopg

    from carbon_pipeline.resources import PrometheusResource
    from carbon_pipeline.times import chunks

    start, end = datetime.fromisoformat(args.start), datetime.fromisoformat(args.end)
    prometheus = PrometheusResource(prometheus_url=os.environ["PROMETHEUS_URL"])
    began = time.perf_counter()
    points = 0
    for chunk_start, chunk_end in chunks(start, end, args.chunk_hours):
        for query in prometheus.queries().values():
            points += sum(
                len(s["values"]) for s in prometheus.query_range(query, chunk_start, chunk_end)[0]
            )
    prometheus_seconds = time.perf_counter() - began

    source = os.environ["DATABASE_URL"]
    copy_seconds, rows = 0.0, 0
    with psycopg.connect(source) as conn:
        for table in OUTPUT_TABLES:
            with conn.cursor() as cur:
                cur.execute(f"SELECT * FROM {table}")
                data = cur.fetchall()
                types = [
                    conn.execute(
                        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
                        "WHERE attrelid = %s::regclass AND attname = %s",
                        (table, d.name),
                    ).fetchone()[0]
                    for d in cur.description
                ]
            floor_table = f"floor_{table}"
            conn.execute(f"DROP TABLE IF EXISTS {floor_table}")
            conn.execute(
                f"CREATE TABLE {floor_table} (LIKE {table} INCLUDING DEFAULTS INCLUDING INDEXES)"
            )
            conn.commit()
            began = time.perf_counter()
            with (
                conn.cursor() as cur,
                cur.copy(f"COPY {floor_table} FROM STDIN (FORMAT BINARY)") as copy,
            ):
                copy.set_types(types)
                for row in data:
                    copy.write_row(row)
            conn.commit()
            copy_seconds += time.perf_counter() - began
            rows += len(data)
            conn.execute(f"DROP TABLE {floor_table}")
            conn.commit()
    return {
        "prometheus": prometheus_seconds,
        "copy": copy_seconds,
        "rows": rows,
        "points": points,
        "wall": prometheus_seconds + copy_seconds,
    }


def noop_copy(real):
    """A stage with real's tables (keys, deps, partitions, backfill policy, metadata) and
    checks whose body does nothing: Dagster's share of a run of the real one."""
    import dagster as dg

    specs = list(real.specs)
    check_specs = list(real.check_specs)

    @dg.multi_asset(
        name=f"noop_{real.node_def.name}",
        specs=specs,
        check_specs=check_specs,
        partitions_def=real.partitions_def,
        backfill_policy=real.backfill_policy,
    )
    def body(context):
        for spec in specs:
            yield dg.MaterializeResult(asset_key=spec.key, metadata={"dagster/row_count": 0})
        for check in check_specs:
            yield dg.AssetCheckResult(asset_key=check.asset_key, check_name=check.name, passed=True)

    return body


def measure_noop(args) -> dict:
    """(d): the same run shape with bodies that do nothing."""
    import dagster as dg

    from carbon_pipeline.backfill import backfill
    from carbon_pipeline.definitions import ASSETS
    from carbon_pipeline.terminal import quiet

    job = dg.Definitions(
        assets=[noop_copy(a) for a in ASSETS],
        jobs=[dg.define_asset_job("hourly_carbon_job")],
        executor=dg.in_process_executor,
    ).resolve_job_def("hourly_carbon_job")
    start, end = datetime.fromisoformat(args.start), datetime.fromisoformat(args.end)
    began = time.perf_counter()
    results = backfill(
        start,
        end,
        instance=dg.DagsterInstance.get(),
        job=job,
        hours_per_run=args.hours_per_run,
        run_config=quiet(),
    )
    assert all(r.success for r in results)
    return {
        "wall": time.perf_counter() - began,
        "runs": len(results),
        "peak_rss_mib": peak_rss_mib(),
    }


def measure_single(args) -> dict:
    """(c): cold `dagster asset materialize --partition` runs, as a daemon would launch them."""
    dagster = str(Path(sys.executable).parent / "dagster")
    start = datetime.fromisoformat(args.start)
    walls = []
    for n in range(args.repeat):
        key = (start + timedelta(hours=n * 7)).strftime("%Y-%m-%d-%H:%M")
        began = time.perf_counter()
        subprocess.run(
            [
                dagster,
                "asset",
                "materialize",
                "-m",
                "carbon_pipeline.definitions",
                "--select",
                "*",
                "--partition",
                key,
            ],
            check=True,
            capture_output=True,
        )
        walls.append(time.perf_counter() - began)
    return {"walls": walls, "mean": statistics.mean(walls)}


LAUNCH = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
  }
}"""
UI_ASSETS = [table for tables in STAGE_TABLES.values() for table in tables]


def measure_ui(args) -> dict:
    """(e): the backfill as the UI launches it: the GraphQL `launchPartitionBackfill` the UI
    sends, to the webserver `carbon-pipeline ui` starts, processed by its daemon; timed from
    the mutation to the last run's end, with where the time went."""
    import signal

    import dagster as dg
    import requests

    from carbon_pipeline.demo.prometheus_server import free_port

    start, end = datetime.fromisoformat(args.start), datetime.fromisoformat(args.end)
    port = free_port()
    home = Path(os.environ["DAGSTER_HOME"])
    ui = subprocess.Popen(
        [str(Path(sys.executable).parent / "carbon-pipeline"), "ui", "--port", str(port)],
        stdout=open(home / "ui-stdout.log", "wb"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    began = time.monotonic()
    while time.monotonic() - began < 180:
        try:
            if requests.get(f"{url}/server_info", timeout=2).ok:
                break
        except requests.RequestException:
            time.sleep(0.5)
    started = time.monotonic() - began
    last = (end - timedelta(hours=1)).strftime("%Y-%m-%d-%H:%M")
    params = {
        "partitionsByAssets": [
            {
                "assetKey": {"path": [key]},
                "partitions": {"range": {"start": start.strftime("%Y-%m-%d-%H:%M"), "end": last}},
            }
            for key in UI_ASSETS
        ]
    }
    instance = dg.DagsterInstance.get()
    launched_at = time.time()
    answer = requests.post(
        f"{url}/graphql", json={"query": LAUNCH, "variables": {"params": params}}, timeout=120
    ).json()["data"]["launchPartitionBackfill"]
    assert answer["__typename"] == "LaunchBackfillSuccess", answer
    backfill_id = answer["backfillId"]
    while True:
        runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/backfill": backfill_id}))
        status = instance.get_backfill(backfill_id).status.value
        if runs and all(r.is_finished for r in runs) and not status.startswith("REQUESTED"):
            break
        if status.startswith(("FAILED", "CANCELED")):
            break
        time.sleep(1)
    assert runs and all(r.is_success for r in runs), f"a UI backfill run failed ({status})"
    records = instance.get_run_records(filters=dg.RunsFilter(run_ids=[r.run_id for r in runs]))
    moments = []
    for record in records:
        seen = {
            e.dagster_event.event_type_value: e.timestamp
            for e in instance.all_logs(record.dagster_run.run_id)
            if e.is_dagster_event
        }
        moments.append(
            {
                "created": record.create_timestamp.timestamp(),
                # The queue daemon marks a run STARTING when it takes it from the queue;
                # START is its worker's first event.
                "dequeued": seen[dg.DagsterEventType.RUN_STARTING.value],
                "started": seen[dg.DagsterEventType.RUN_START.value],
                "ended": record.end_time,
            }
        )
    stop_began = time.monotonic()
    os.killpg(ui.pid, signal.SIGTERM)
    ui.wait(timeout=60)
    first_start = min(m["started"] for m in moments)
    last_end = max(m["ended"] for m in moments)
    executing = sum(m["ended"] - m["started"] for m in moments)
    return {
        "wall": last_end - launched_at,
        "runs": len(moments),
        "ui_ready": started,
        "first_run_created": min(m["created"] for m in moments) - launched_at,
        "last_run_created": max(m["created"] for m in moments) - launched_at,
        "queued_mean": statistics.mean(m["dequeued"] - m["created"] for m in moments),
        "launch_mean": statistics.mean(m["started"] - m["dequeued"] for m in moments),
        "execution_mean": executing / len(moments),
        "runs_at_once": executing / (last_end - first_start),
        "ui_stop": time.monotonic() - stop_began,
        "rows": count_rows(os.environ["DATABASE_URL"]),
    }


MEASURES = {
    "ui": measure_ui,
    "pipeline": measure_pipeline,
    "floor": measure_floor,
    "noop": measure_noop,
    "single": measure_single,
}


# ---- orchestration ----------------------------------------------------------------------


class Services:
    """Prometheus on a cached TSDB, the intensity server, and fresh databases."""

    def __init__(self, cache: Path, hosts: int, start: datetime, end: datetime, tsdb_end: datetime):
        from carbon_pipeline.demo import postgres
        from carbon_pipeline.demo.intensity_server import IntensityServer, synthetic_periods
        from carbon_pipeline.demo.prometheus_server import PrometheusServer, ensure_installed

        ensure_installed()
        self.cache = cache
        # Named after the cache: a benchmark beside another (or beside the test suite's quick
        # one) never drops the other's databases.
        self.databases = "carbon_bench_" + hashlib.sha1(str(cache).encode()).hexdigest()[:8]
        self.made: set[str] = set()
        self.folder = cached_tsdb(cache, hosts, start, tsdb_end)
        self.admin = postgres.admin_url()
        self.prometheus = PrometheusServer(
            self.folder / "data", log_file=cache / "prometheus.log"
        ).start()
        self.intensity = IntensityServer(
            synthetic_periods(start - timedelta(days=1), tsdb_end + timedelta(days=1))
        ).start()
        self.start = start

    def fresh_env(self, label: str, instance_tables: bool = False) -> dict:
        """A fresh warehouse, migrated as a deployment's `carbon-pipeline migrate` leaves it
        (concurrent backfills would otherwise queue on the first one's migrations), and a
        fresh Dagster instance; with `instance_tables`, its tables made, as a deployment's
        first run leaves them (processes creating them at once can collide: "type snapshots
        already exists")."""
        from carbon_pipeline.instance import dagster_postgres_url
        from carbon_pipeline.resources.warehouse import WarehouseResource, dispose_engines

        home = self.cache / "homes" / label
        home.mkdir(parents=True, exist_ok=True)
        (home / "dagster.yaml").write_text((REPO / "deploy" / "dagster.yaml").read_text())
        warehouse = self._database(f"{self.databases}_{label}")
        WarehouseResource(database_url=warehouse).migrate()
        dispose_engines()
        env = {
            **os.environ,
            "DATABASE_URL": warehouse,
            "DAGSTER_POSTGRES_URL": dagster_postgres_url(
                self._database(f"{self.databases}_{label}_dagster")
            ),
            "DAGSTER_HOME": str(home),
            "PROMETHEUS_URL": self.prometheus.url,
            "CARBON_INTENSITY_API_URL": self.intensity.url,
            "MONGO_URI": "mongomock://localhost",
            "MONGO_SEED_DIR": str(self.folder / "registry"),
            "CARBON_PIPELINE_START": f"{self.start:%Y-%m-%dT%H:%MZ}",
            "CARBON_PIPELINE_SCHEDULE_STATUS": "STOPPED",
            "CARBON_PIPELINE_ASSET_RETRIES": "0",
        }
        if instance_tables:
            subprocess.run(
                [sys.executable, "-c", "import dagster; dagster.DagsterInstance.get().dispose()"],
                env=env,
                check=True,
            )
        return env

    def _database(self, name: str) -> str:
        from carbon_pipeline.demo import postgres

        self.made.add(name)
        return postgres.fresh_database(self.admin, name)

    def stop(self) -> None:
        """Stops the servers and drops the databases the measurements made."""
        import psycopg

        self.intensity.stop()
        self.prometheus.stop()
        with psycopg.connect(self.admin, autocommit=True) as conn:
            for name in sorted(self.made):
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


CONCURRENT_SHAPES = {
    "f": "two concurrent backfills of the halves",
    "f_months": "two concurrent backfills whose runs share months",
    "f_three": "three concurrent backfills of the thirds",
}
# The shapes whose windows are not (a)'s runs: their speed-up is against the same windows run
# one after another (f_months runs 730-hour windows, twice (a)'s runs); the halves and thirds
# are cut at (a)'s run boundaries, so (a) is their one-at-a-time time.
SERIAL_BASELINE = ("f_months",)


def concurrent_shape(shape: str, start: datetime, end: datetime, hours_per_run: int) -> list:
    """The backfills of a concurrent shape, each a list of windows [(start, end)]: the halves;
    the range in run-sized windows dealt alternately to two backfills, so that the runs going
    on at once are neighbours sharing a calendar month (1,460 or 730 hours are not
    month-aligned); or the thirds."""
    hours = int((end - start) / timedelta(hours=1))
    if shape == "f_months":
        size = max(1, min(hours_per_run, 730, hours // 4))
        windows = [
            (start + timedelta(hours=h), min(end, start + timedelta(hours=h + size)))
            for h in range(0, hours, size)
        ]
        return [windows[0::2], windows[1::2]]
    parts = 3 if shape == "f_three" else 2
    cuts = [start + timedelta(hours=hours * n // parts) for n in range(parts + 1)]
    return [[(a, b)] for a, b in zip(cuts, cuts[1:], strict=False)]


def measure_concurrent(env: dict, backfills: list, hours_per_run: int) -> dict:
    """(f): backfills at once, each its own process, on one warehouse and one instance (as
    data engineers, or workers, would), while pg_stat_activity is sampled: the share of the
    warehouse sessions' active time spent waiting on a lock."""
    import threading

    import psycopg

    results: list[dict] = []
    samples = {"active": 0, "waiting": 0}
    done = threading.Event()

    def run(windows: list) -> None:
        listed = ",".join(f"{a.isoformat()}/{b.isoformat()}" for a, b in windows)
        results.append(
            run_measure(
                "pipeline",
                env,
                windows[0][0],
                windows[-1][1],
                hours_per_run=hours_per_run,
                windows=listed,
            )
        )

    def sample() -> None:
        with psycopg.connect(env["DATABASE_URL"], autocommit=True) as conn:
            while not done.wait(0.1):
                active, waiting = conn.execute(
                    "SELECT count(*) FILTER (WHERE state = 'active'), "
                    "count(*) FILTER (WHERE state = 'active' AND wait_event_type = 'Lock') "
                    "FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                ).fetchone()
                samples["active"] += active
                samples["waiting"] += waiting

    sampler = threading.Thread(target=sample)
    sampler.start()
    began = time.perf_counter()
    threads = [threading.Thread(target=run, args=(windows,)) for windows in backfills]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - began
    done.set()
    sampler.join()
    assert len(results) == len(backfills), "a concurrent backfill failed"
    return {
        "wall": wall,
        "halves": [r["wall"] for r in results],
        "runs": sum(r["runs"] for r in results),
        "rows": count_rows(env["DATABASE_URL"]),
        "lock_wait_share": samples["waiting"] / max(1, samples["active"]),
    }


def run_measure(kind: str, env: dict, start: datetime, end: datetime, **options) -> dict:
    command = [
        sys.executable,
        "-m",
        "carbon_pipeline_tests.bench",
        "measure",
        kind,
        "--start",
        start.isoformat(),
        "--end",
        end.isoformat(),
    ]
    for key, value in options.items():
        command += [f"--{key.replace('_', '-')}", str(value)]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"measurement {kind} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main_bench(args) -> int:
    cache = Path(args.cache).resolve()
    start = month_start(2025, 3)
    months = 1 if args.quick else args.months
    hosts = 25 if args.quick else args.hosts
    end = start + timedelta(days=args.days) if args.days else month_start(2025, 3 + months)
    hours = int((end - start) / timedelta(hours=1))
    from carbon_pipeline.partitions import HOURS_PER_RUN

    hours_per_run = HOURS_PER_RUN
    chunk_hours = int(os.getenv("CARBON_PIPELINE_CHUNK_HOURS", "744"))
    report: dict = {
        "hosts": hosts,
        "hours": hours,
        "hours_per_run": hours_per_run,
        "chunk_hours": chunk_hours,
    }

    repeat = args.repeat or (1 if args.quick else 2)
    # (a) is always measured: every other figure is read against it.
    only = set(args.only) - {"e" if args.skip_ui else "", "f" if args.skip_concurrency else ""}
    report["repeat"] = repeat
    services = Services(cache, hosts, start, end, end)
    try:
        # (a), (d), (e) and (f) are timed `repeat` times, alternately, and the fastest of each kept: this
        # shared machine's speed drifts by 10-25 % between runs (timeit's rule: the minimum is
        # the measurement, the rest is noise from elsewhere).
        tries: dict[str, list[dict]] = {
            "a": [],
            "d": [],
            "e": [],
            **{k: [] for k in CONCURRENT_SHAPES},
            **{f"{k}_serial": [] for k in SERIAL_BASELINE},
        }
        for attempt in range(repeat):
            log(
                f"(a) backfill of {hosts} hosts x {hours} hours through Dagster ({attempt + 1}/{repeat}) ..."
            )
            env_a = services.fresh_env("a")
            tries["a"].append(
                with_machine_cpu(
                    lambda env_a=env_a: run_measure(
                        "pipeline", env_a, start, end, hours_per_run=hours_per_run
                    )
                )
            )
            if attempt == 0 and "b" in only:
                log("(b) I/O floor ...")
                report["b"] = run_measure("floor", env_a, start, end, chunk_hours=chunk_hours)
            if attempt == 0 and "c" in only:
                log("(c) cold one-partition runs ...")
                report["c"] = run_measure(
                    "single", env_a, start, end, repeat=1 if args.quick else 3
                )
            if "d" in only:
                log(f"(d) Dagster floor (no-op bodies) ({attempt + 1}/{repeat}) ...")
                tries["d"].append(
                    run_measure(
                        "noop", services.fresh_env("d"), start, end, hours_per_run=hours_per_run
                    )
                )
            if "e" in only:
                log(f"(e) the same backfill launched as the UI does ({attempt + 1}/{repeat}) ...")
                tries["e"].append(run_measure("ui", services.fresh_env("e"), start, end))
            if "f" in only:
                for shape, title in CONCURRENT_SHAPES.items():
                    backfills = concurrent_shape(shape, start, end, hours_per_run)
                    if shape in SERIAL_BASELINE:
                        log(f"({shape}) its windows one after another ({attempt + 1}/{repeat}) ...")
                        windows = ",".join(
                            f"{a.isoformat()}/{b.isoformat()}"
                            for a, b in sorted(w for runs in backfills for w in runs)
                        )
                        env = services.fresh_env(f"{shape}_serial")
                        tries[f"{shape}_serial"].append(
                            with_machine_cpu(
                                lambda env=env, windows=windows: run_measure(
                                    "pipeline",
                                    env,
                                    start,
                                    end,
                                    hours_per_run=hours_per_run,
                                    windows=windows,
                                )
                            )
                        )
                    log(f"({shape}) the same range as {title} ({attempt + 1}/{repeat}) ...")
                    env = services.fresh_env(shape, instance_tables=True)
                    tries[shape].append(
                        with_machine_cpu(
                            lambda env=env, backfills=backfills: measure_concurrent(
                                env, backfills, hours_per_run
                            )
                        )
                    )
        for kind, results in tries.items():
            if not results:
                continue
            report[kind] = {
                **min(results, key=lambda r: r["wall"]),
                "walls": [r["wall"] for r in results],
            }
        scaling = []
        if not args.skip_scaling:
            shapes = [(hosts, 24 * 7), (hosts, 24 * 14), (hosts, hours)] if args.quick else []
            shapes = [(h, n) for h, n in dict.fromkeys(shapes) if n <= hours]
            for shape_hosts, shape_hours in shapes:
                log(f"scaling: {shape_hosts} hosts x {shape_hours} hours ...")
                shape_end = start + timedelta(hours=shape_hours)
                result = run_measure(
                    "pipeline",
                    services.fresh_env("s"),
                    start,
                    shape_end,
                    hours_per_run=hours_per_run,
                )
                scaling.append({"hosts": shape_hosts, "hours": shape_hours, **result})
    finally:
        services.stop()
    if not args.quick and not args.skip_scaling:
        month_end = month_start(2025, 4)
        for shape_hosts in (25, 50, 100, 1000):
            log(f"scaling: {shape_hosts} hosts x 744 hours ...")
            shape = Services(cache, shape_hosts, start, month_end, month_end)
            try:
                result = run_measure(
                    "pipeline", shape.fresh_env("s"), start, month_end, hours_per_run=hours_per_run
                )
            finally:
                shape.stop()
            scaling.append({"hosts": shape_hosts, "hours": 744, **result})
        scaling.append({"hosts": hosts, "hours": hours, **report["a"]})
    report["scaling"] = scaling
    print_report(report)
    out = cache / f"results-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.write_text(json.dumps(report, indent=2, default=str))
    log(f"results saved to {out}")
    return 0


def print_report(r: dict) -> None:
    from carbon_pipeline import timing

    a, b, c, d = r["a"], r.get("b"), r.get("c"), r.get("d")
    rows = sum(a["rows"].values())
    phases = a["phases"]
    ours = sum(phases.values())
    print(
        f"\nBackfill of {r['hosts']} hosts x {r['hours']} hours ({r['hours'] / 8760:.2f} years); "
        f"{a['runs']} runs of <= {r['hours_per_run']} hours; chunks of {r['chunk_hours']} hours\n"
    )
    print(f"{'measurement':<46}{'seconds':>10}{'rows/s':>12}{'peak RSS MiB':>14}")
    print(
        f"{'(a) backfill through Dagster, end to end':<46}{a['wall']:>10.1f}{rows / a['wall']:>12,.0f}{a['peak_rss_mib']:>14,.0f}"
        + _tries(a)
    )
    for name in timing.PHASES:
        label = f"rollups ({phases[name] / a['runs']:.1f} s a run)" if name == "rollups" else name
        print(f"{'    ' + label:<46}{phases.get(name, 0.0):>10.1f}")
    # Phases run in threads at once (sources asked a chunk ahead, COPYs behind, the rollups'
    # checks side by side), so this is the wall time they do not explain, not Dagster's alone.
    print(f"{'    the rest: Dagster, untimed; phases overlap':<46}{a['wall'] - ours:>10.1f}")
    if b:
        print(f"{'(b) I/O floor':<46}{b['wall']:>10.1f}{b['rows'] / b['copy']:>12,.0f}")
        print(f"{'    prometheus range queries alone':<46}{b['prometheus']:>10.1f}")
        print(f"{'    bare binary COPY of the output rows':<46}{b['copy']:>10.1f}")
    if c:
        one_per_partition = c["mean"] * r["hours"]
        print(
            f"{'(c) one run per partition (cold), x ' + str(r['hours']):<46}{one_per_partition:>10.0f}"
            f"   ({c['mean']:.2f} s per run: {', '.join(f'{w:.2f}' for w in c['walls'])})"
        )
    if d:
        print(
            f"{'(d) Dagster floor: same shape, no-op bodies':<46}{d['wall']:>10.1f}{'':>12}{d['peak_rss_mib']:>14,.0f}"
            + _tries(d)
        )
    e = r.get("e")
    if e:
        print(
            f"{'(e) the same backfill launched from the UI':<46}{e['wall']:>10.1f}"
            f"{sum(e['rows'].values()) / e['wall']:>12,.0f}" + _tries(e)
        )
        for label, key in (
            ("    daemon picks it up: first run submitted", "first_run_created"),
            ("    last run submitted", "last_run_created"),
            ("    per run: waiting in the run queue", "queued_mean"),
            ("    per run: launch (process, code loading)", "launch_mean"),
            ("    per run: execution", "execution_mean"),
        ):
            print(f"{label:<46}{e[key]:>10.1f}")
        print(f"{'    runs executing at once (mean)':<46}{e['runs_at_once']:>10.2f}")
        print(
            f"{'    carbon-pipeline ui: ready / stopped after SIGTERM':<46}{e['ui_ready']:>10.1f}{e['ui_stop']:>12.1f}"
        )
    print(f"\nrows written: {rows:,} ({', '.join(f'{k} {v:,}' for k, v in a['rows'].items())})")
    if "bytes" in a:
        print(
            "bytes per row, indexes included: "
            + ", ".join(
                f"{k} {a['bytes'][k] / v:,.0f}"
                for k, v in a["rows"].items()
                if v and k in a["bytes"]
            )
        )
    if b and d:
        print(
            f"our own work (a - d) / I/O floor (b) = {(a['wall'] - d['wall']) / b['wall']:.2f}   (target <= 2)"
        )
    if c:
        print(
            f"one run per partition (c) / backfill (a) = {one_per_partition / a['wall']:.0f}x   (target >= 300)"
        )
        print(f"an hourly scheduled run (cold, one partition) = {c['mean']:.1f} s   (target <= 10)")
    if e:
        print(
            f"the UI backfill (e) / the CLI backfill (a) = {e['wall'] / a['wall']:.2f}   (target <= 1.3)"
        )
    for shape, title in CONCURRENT_SHAPES.items():
        f = r.get(shape)
        if f:
            serial, label = (
                (r[f"{shape}_serial"], "its windows") if shape in SERIAL_BASELINE else (a, "(a)")
            )
            print(
                f"({shape}) {title}: {f['wall']:.1f} s "
                f"({', '.join(f'{w:.1f}' for w in f['halves'])}); one at a time {label} "
                f"{serial['wall']:.1f} s: speed-up {serial['wall'] / f['wall']:.2f}x   (target >= 1.6); "
                f"waiting on locks {100 * f['lock_wait_share']:.1f}% of the sessions' active "
                "time   (target <= 5%)" + _tries(f)
            )
            if "machine_cpu_seconds" in f and "machine_cpu_seconds" in serial:
                print("    " + cpu_ceiling(serial, f))
    big = next((s for s in r["scaling"] if s["hosts"] >= 1000), None)
    small = next((s for s in r["scaling"] if s["hosts"] == 100 and s["hours"] == 744), None)
    if big and small:
        print(
            f"(g) {big['hosts']:,} hosts x {big['hours']} hours: {big['wall']:.1f} s, peak RSS "
            f"{big['peak_rss_mib']:,.0f} MiB (target <= 2048); our work "
            f"{_per_host_hour(big):.1f} us per host-hour against {_per_host_hour(small):.1f} at "
            "100 hosts (target: no worse)"
        )
    if r["scaling"]:
        print(
            f"\n{'hosts':>6}{'hours':>7}{'host-hours':>12}{'seconds':>10}{'our work s':>12}{'us/host-hour':>14}"
        )
        for s in r["scaling"]:
            work = sum(s["phases"].values())
            print(
                f"{s['hosts']:>6}{s['hours']:>7}{s['hosts'] * s['hours']:>12,}{s['wall']:>10.1f}{work:>12.1f}"
                f"{1e6 * work / (s['hosts'] * s['hours']):>14.1f}"
            )


def cpu_ceiling(serial: dict, concurrent: dict) -> str:
    """What the machine's cores allow: one at a time keeps `used` cores busy on average, so
    on `cores` the speed-up can be at most cores / used, and less by whatever CPU running at
    once adds. The CPU-seconds include each process's start-up, which the one-at-a-time wall
    does not: `used` is a little high, the ceiling a little low (by ~4 CPU-s a process)."""
    cores = os.cpu_count() or 1
    used = serial["machine_cpu_seconds"] / serial["wall"]
    busy = concurrent["machine_cpu_seconds"] / (cores * concurrent["wall"])
    extra = concurrent["machine_cpu_seconds"] - serial["machine_cpu_seconds"]
    return (
        f"CPU: one at a time kept {used:.2f} of {cores} cores busy "
        f"({serial['machine_cpu_seconds']:.0f} CPU-s), so at most {cores / used:.2f}x here; "
        f"at once the cores were {100 * busy:.0f}% busy and spent {extra:+.0f} CPU-s more"
    )


def _per_host_hour(shape: dict) -> float:
    """Microseconds of our own work (every phase but Dagster's) per host-hour."""
    return 1e6 * sum(shape["phases"].values()) / (shape["hosts"] * shape["hours"])


def _tries(result: dict) -> str:
    walls = result.get("walls", [])
    if len(walls) < 2:
        return ""
    return f"   (fastest of {', '.join(f'{w:.1f}' for w in walls)})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m carbon_pipeline_tests.bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command")
    measure = sub.add_parser("measure", help=argparse.SUPPRESS)
    measure.add_argument("kind", choices=sorted(MEASURES))
    measure.add_argument("--start", required=True)
    measure.add_argument("--end", required=True)
    measure.add_argument("--hours-per-run", type=int, default=744)
    measure.add_argument("--chunk-hours", type=int, default=744)
    measure.add_argument("--repeat", type=int, default=3)
    measure.add_argument("--windows", default="", help="start/end,start/end,...: one after another")
    parser.add_argument("--quick", action="store_true", help="25 hosts for a month (CI-sized)")
    parser.add_argument("--hosts", type=int, default=100)
    parser.add_argument("--days", type=int, default=0, help="a range of this many days instead")
    parser.add_argument("--months", type=int, default=12)
    parser.add_argument("--cache", default=str(REPO / ".bench"))
    parser.add_argument("--skip-scaling", action="store_true")
    parser.add_argument(
        "--only",
        default="abcdef",
        help="the measurements to take, by letter (default abcdef); (a) is always taken",
    )
    parser.add_argument("--skip-ui", action="store_true", help="leave out (e), the UI backfill")
    parser.add_argument(
        "--skip-concurrency", action="store_true", help="leave out (f), the concurrent backfills"
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=0,
        help="time (a) and (d) this many times and keep the fastest (default: 2; 1 with --quick)",
    )
    args = parser.parse_args(argv)
    if args.command == "measure":
        print(json.dumps(MEASURES[args.kind](args)))
        return 0
    return main_bench(args)


if __name__ == "__main__":
    sys.exit(main())
