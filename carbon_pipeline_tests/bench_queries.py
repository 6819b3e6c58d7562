"""Benchmark (h): the analysts' queries on a warehouse of many users and years.

`python -m carbon_pipeline_tests.bench_queries [--users 1000 --years 5 | --quick]` fills a fresh
database, migrated as the pipeline migrates it, with every entity active every hour (users,
groups, projects, machine types, and ada), rolls it up month by month as the pipeline's
windows do (timed), and times every query the analyst guide documents and the views the
issue measured (best of 3), each printed beside its target."""

from __future__ import annotations

import argparse
import re
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "analyst-guide.md"
TARGET_SECONDS = 0.5
# Besides the guide's: the views and calls measured before the rollups (issue 21).
MEASURED = {
    "v_usage_total": "SELECT * FROM v_usage_total",
    "v_user_averages": "SELECT * FROM v_user_averages",
    "v_user_total": "SELECT * FROM v_user_total",
    "usage_between_user_month": "SELECT * FROM usage_between('user', %(month)s, %(next_month)s)",
    "v_usage_monthly_project": "SELECT * FROM v_usage_monthly WHERE scope = 'project'",
    "v_project_total": "SELECT * FROM v_project_total",
    "v_usage_daily_user_year": "SELECT * FROM v_usage_daily WHERE scope = 'user' "
    "AND scope_name = 'alice' AND day >= %(year_ago)s",
    "v_usage_heatmap_project": "SELECT * FROM v_usage_heatmap WHERE scope = 'project' "
    "AND scope_name = 'IDAaaS'",
}
# carbon_reporter's versions (as carbon_reporter). Every group-hour of the fill has 5 people, so
# the default policy shows every aggregate row: the largest release, the slowest reads.
REPORTER = {
    "reporting.v_usage_total": "SELECT * FROM reporting.v_usage_total",
    "reporting.v_group_averages": "SELECT * FROM reporting.v_group_averages",
    "reporting.v_project_total": "SELECT * FROM reporting.v_project_total",
    "reporting.usage_between_group_month": "SELECT * FROM reporting.usage_between('group', "
    "%(month)s, %(next_month)s)",
    "reporting.v_usage_monthly_project": "SELECT * FROM reporting.v_usage_monthly "
    "WHERE scope = 'project'",
}
SCOPES = {  # scope: (fact table, id column, dimension, how many by default)
    "project": ("fact_usage_project", "project_id", "dim_project", 40),
    "machine": ("fact_usage_machine", "machine_id", "dim_machine", 60),
    "group": ("fact_usage_group", "group_id", "dim_group", 400),
    "user": ("fact_usage_user", "user_id", "dim_user", 1000),
}
START = datetime(2021, 1, 1, tzinfo=UTC)
# The forecast's record starts when its schedule does: the last 90 days of vintages (every
# half hour, 48 hours each, national and RAL's region).
FORECAST_DAYS = 90


def log(message: str) -> None:
    print(f"[bench h] {message}", file=sys.stderr, flush=True)


def documented_queries() -> dict[str, str]:
    text = GUIDE.read_text()
    return dict(re.findall(r"<!-- query: (\w+) -->\s*```sql\n(.*?)```", text, flags=re.S))


def _months(years: int) -> list[datetime]:
    return [
        START.replace(year=START.year + m // 12, month=m % 12 + 1) for m in range(12 * years + 1)
    ]


def fill(url: str, counts: dict[str, int], years: int) -> dict:
    """Dimensions and every entity's every hour for `years` from START; then the rollups,
    one month at a time (a window's worth). Returns the seconds each took."""
    months = _months(years)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO dim_project (cloud_project_name) SELECT CASE n WHEN 1 THEN 'IDAaaS' "
            "ELSE 'project-' || n END FROM generate_series(1, %s) n",
            (counts["project"],),
        )
        conn.execute(
            "INSERT INTO dim_machine (machine_name) SELECT 'machine-' || n "
            "FROM generate_series(1, %s) n",
            (counts["machine"],),
        )
        # Each group is one project's machine type, as the pipeline records it.
        conn.execute(
            "INSERT INTO dim_group (group_name, cloud_project_name, machine_name) "
            "SELECT 'group-' || n, p.cloud_project_name, m.machine_name "
            "FROM generate_series(1, %s) n "
            "JOIN dim_project p ON p.project_id = 1 + (n - 1) %% %s "
            "JOIN dim_machine m ON m.machine_id = 1 + (n - 1) %% %s",
            (counts["group"], counts["project"], counts["machine"]),
        )
        conn.execute(
            "INSERT INTO dim_user (ext_user_id) SELECT CASE n WHEN 1 THEN 'alice' "
            "ELSE 'user-' || n END FROM generate_series(1, %s) n",
            (counts["user"],),
        )
        # The rows are consistent by construction: their foreign-key triggers are skipped
        # (a superuser's session), which halves the fill.
        conn.execute("SET session_replication_role = replica")
        began = time.perf_counter()
        for start, end in zip(months, months[1:], strict=False):
            tables = {"ada": ("fact_usage_ada", None, None)} | {s: SCOPES[s][:3] for s in SCOPES}
            for scope, (table, id_column, dim) in tables.items():
                users = "" if scope == "user" else "users, "
                people = "" if scope == "user" else "5, "
                conn.execute(
                    "SELECT carbon_ensure_month_partitions(%s, %s, %s)", (table, start, end)
                )
                ids = f"d.{id_column}, " if id_column else ""
                source = f"CROSS JOIN {dim} d" if dim else ""
                # Numbers that differ by entity and hour; a tenth of hours estimated.
                conn.execute(
                    f"""
                    INSERT INTO {table} ({id_column + ", " if id_column else ""}timestamp_utc,
                      busy_cpu_seconds_total, idle_cpu_seconds_total, busy_kwh, idle_kwh,
                      busy_gco2eq, idle_gco2eq, intensity_gco2eq_per_kwh, intensity_source,
                      memory_kwh, overhead_kwh, full_kwh, memory_gco2eq, overhead_gco2eq,
                      embodied_gco2eq, full_gco2eq, regional_gco2eq, {users}
                      footprint_unknown_hosts, regional_unknown_hosts)
                    SELECT {ids}h, b * 3600, (1 - b) * 3600, b * 0.02, (1 - b) * 0.005,
                      b * 0.02 * i, (1 - b) * 0.005 * i, i,
                      CASE WHEN extract(hour FROM h) = 3 THEN 'forecast' ELSE 'actual' END,
                      0.001, 0.002, 0.028, 0.001 * i, 0.002 * i, 1.5, 0.028 * i + 1.5,
                      0.028 * i * 0.9, {people}0, 0
                    FROM generate_series(%s::timestamptz, %s::timestamptz - interval '1 hour',
                                         interval '1 hour') h
                    {source}
                    CROSS JOIN LATERAL (SELECT
                      (0.1 + 0.8 * abs(sin(extract(epoch FROM h) / 3600.0 {"+ d." + id_column if id_column else ""}))) AS b,
                      (150 + 50 * sin(extract(epoch FROM h) / 86400.0)) AS i) v
                    """,
                    (start, end),
                )
        # The hours' intensity (the facts' i), and the forecast's vintages.
        conn.execute(
            """
            INSERT INTO carbon_intensity_hourly (timestamp_utc, intensity_gco2eq_per_kwh,
              intensity_source, forecast_gco2eq_per_kwh, actual_gco2eq_per_kwh, period_count)
            SELECT h, i, 'actual', i, i, 2
            FROM generate_series(%s::timestamptz, %s::timestamptz - interval '1 hour',
                                 interval '1 hour') h
            CROSS JOIN LATERAL (SELECT 150 + 50 * sin(extract(epoch FROM h) / 86400.0) AS i) v
            """,
            (months[0], months[-1]),
        )
        conn.execute("INSERT INTO forecast_site VALUES ('RAL', 12)")
        conn.execute(
            """
            INSERT INTO intensity_forecast (region_id, issued_at, period_from,
              forecast_gco2eq_per_kwh, intensity_index)
            SELECT r, v, v + k * interval '30 minutes',
              (150 + 50 * sin(extract(epoch FROM v + k * interval '30 minutes') / 86400.0)
               + 0.2 * k) * CASE r WHEN 0 THEN 1 ELSE 0.8 END, 'moderate'
            FROM generate_series(%s::timestamptz - %s * interval '1 day',
                                 %s::timestamptz - interval '30 minutes',
                                 interval '30 minutes') v
            CROSS JOIN generate_series(0, 95) k
            CROSS JOIN (VALUES (0), (12)) regions (r)
            """,
            (months[-1], FORECAST_DAYS, months[-1]),
        )
        # The error sums, as each fetch refreshes the days of its horizon (timed: one fetch's).
        for day in range(FORECAST_DAYS + 2, 0, -1):
            conn.execute(
                "SELECT carbon_refresh_forecast_error(%s::timestamptz - %s * interval '1 day', "
                "%s::timestamptz - %s * interval '1 day' + interval '48 hours')",
                (months[-1], day, months[-1], day),
            )
        began_fetch = time.perf_counter()
        conn.execute(
            "SELECT carbon_refresh_forecast_error(%s::timestamptz - interval '30 minutes', "
            "%s::timestamptz + interval '47 hours 30 minutes')",
            (months[-1], months[-1]),
        )
        forecast_refresh = time.perf_counter() - began_fetch
        filled = time.perf_counter() - began
        conn.execute("SET session_replication_role = origin")
        began = time.perf_counter()
        rollup_seconds, release_seconds = [], []
        for start, end in zip(months, months[1:], strict=False):
            month_began = time.perf_counter()
            parts = dict(
                conn.execute(
                    "SELECT rollup_table, seconds FROM carbon_refresh_rollups(%s, %s)", (start, end)
                ).fetchall()
            )
            rollup_seconds.append(time.perf_counter() - month_began)
            release_seconds.append(parts["public.reporting_release"])
        rolled_up = time.perf_counter() - began
        conn.execute("VACUUM ANALYZE")
        size = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
    return {
        "fill_seconds": filled,
        "rollup_seconds": rolled_up,
        "rollup_seconds_per_month": max(rollup_seconds),
        "release_seconds_per_month": max(release_seconds),
        "forecast_refresh_seconds": forecast_refresh,
        "bytes": size,
        "end": months[-1],
    }


def time_queries(url: str, end: datetime, repeat: int = 3) -> dict[str, float]:
    """{query: the best of `repeat` wall times [s]}, as the analyst role, reporting as of
    the end of the data."""
    last_month = (
        end.replace(month=end.month - 1)
        if end.month > 1
        else end.replace(year=end.year - 1, month=12)
    )
    params = {
        "month": last_month,
        "next_month": end,
        "year_ago": end.replace(year=end.year - 1).date(),
    }
    best = {}
    for role, queries in (
        ("carbon_analyst", {**documented_queries(), **MEASURED}),
        ("carbon_reporter", REPORTER),
    ):
        with psycopg.connect(url) as conn:
            conn.execute(f"SET ROLE {role}")
            conn.execute("SELECT set_config('carbon.now', %s, false)", (end.isoformat(),))
            for name, query in queries.items():
                walls = []
                for _ in range(repeat):
                    began = time.perf_counter()
                    conn.execute(query, params if "%(" in query else None).fetchall()
                    walls.append(time.perf_counter() - began)
                best[name] = min(walls)
    return best


def _exists(admin: str, name: str) -> bool:
    with psycopg.connect(admin) as conn:
        return (
            conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
            is not None
        )


def main(argv: list[str] | None = None) -> int:
    from carbon_pipeline.demo import postgres
    from carbon_pipeline.resources import WarehouseResource
    from carbon_pipeline.resources.warehouse import dispose_engines

    parser = argparse.ArgumentParser(prog="python -m carbon_pipeline_tests.bench_queries")
    parser.add_argument("--users", type=int, default=SCOPES["user"][3])
    parser.add_argument("--groups", type=int, default=SCOPES["group"][3])
    parser.add_argument("--projects", type=int, default=SCOPES["project"][3])
    parser.add_argument("--machines", type=int, default=SCOPES["machine"][3])
    parser.add_argument("--years", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="20 users, 4 groups, a year")
    parser.add_argument(
        "--keep", action="store_true", help="keep the filled database; a later run re-times it"
    )
    args = parser.parse_args(argv)
    counts = {
        "user": args.users,
        "group": args.groups,
        "project": args.projects,
        "machine": args.machines,
    }
    years = args.years
    if args.quick:
        counts, years = {"user": 20, "group": 4, "project": 2, "machine": 2}, 1
    admin = postgres.admin_url()
    name = f"carbon_bench_queries_{counts['user']}u_{years}y"
    kept = args.keep and _exists(admin, name)
    url = postgres.database_url(admin, name) if kept else postgres.fresh_database(admin, name)
    try:
        if kept:
            log(f"re-timing the kept database {name}")
            filled = {"end": _months(years)[-1]}
        else:
            WarehouseResource(database_url=url).migrate()
            dispose_engines()
            log(f"filling {counts} x {years} year(s) of hours ...")
            filled = fill(url, counts, years)
            log(
                f"filled in {filled['fill_seconds']:.0f} s ({filled['bytes'] / 2**30:.1f} GiB); "
                f"rolled up in {filled['rollup_seconds']:.1f} s"
            )
        best = time_queries(url, filled["end"])
    finally:
        if not args.keep:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    print(
        f"\n(h) analysts' queries: {counts}, {years} year(s), best of 3, as carbon_analyst "
        "(reporting.*: as carbon_reporter)\n"
    )
    print(f"{'query':40} {'ms':>9}  target")
    for query, seconds in best.items():
        mark = "ok" if seconds <= TARGET_SECONDS else "OVER"
        print(f"{query:40} {1000 * seconds:9.1f}  <= {1000 * TARGET_SECONDS:.0f} ms {mark}")
    if "rollup_seconds" not in filled:
        return 0
    print(
        f"\nrollup of one month (a window's work): at most {filled['rollup_seconds_per_month']:.2f} s "
        f"(of which carbon_reporter's release at most {filled['release_seconds_per_month']:.2f} s); "
        f"all {12 * years} months {filled['rollup_seconds']:.1f} s; a forecast fetch's refresh "
        f"of the forecast error: {filled['forecast_refresh_seconds']:.2f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
