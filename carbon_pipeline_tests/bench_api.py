"""Benchmark (i): the API under load, on bench (h)'s warehouse.

`python -m carbon_pipeline_tests.bench_api [--years 5] [--clients 50] [--seconds 10]` fills (or
reuses, kept) bench (h)'s warehouse of 1,000 users, serves `carbon-pipeline api` on it with the
workers docs/api.md recommends, and drives every read route with wrk (Debian's package) at
`--clients` concurrent connections: p50, p99 and requests per second per route, each beside
the target (p99 <= 50 ms). Beside them, the seed's way on the same machine: its per-request
`increase(...[1h])` query to Prometheus for one group over a month (bench.py's cached fleet).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import psycopg
import requests

from carbon_pipeline_tests import bench_queries

TARGET_P99_MS = 50.0
LOGIN = "carbon_api_bench"


def log(message: str) -> None:
    print(f"[bench i] {message}", file=sys.stderr, flush=True)


def routes(end, group: str) -> dict[str, str]:
    month = (end - timedelta(days=1)).replace(day=1)
    span = f"start={month:%Y-%m-%dT%H:%MZ}&end={end:%Y-%m-%dT%H:%MZ}"
    return {
        "GET /carbon/intensity/current": "/carbon/intensity/current",
        "GET /carbon/intensity/forecast": "/carbon/intensity/forecast?hours=48",
        "GET /carbon/equivalencies/{g}": "/carbon/equivalencies/1000",
        "GET /carbon/electricity/estimate": "/carbon/electricity/estimate?busy_cpu_seconds=3600",
        "GET /groups": "/groups",
        "GET /groups/{name}/usage (a month)": f"/groups/{group}/usage?{span}",
        "GET /groups/{name}/summary": f"/groups/{group}/summary",
        "GET /workspaces/summary": "/workspaces/summary",
        "GET /carbon/history (day)": f"/carbon/history?view=day&date={month:%Y-%m-%d}",
        "GET /carbon/history (month, a project)": (
            f"/carbon/history?view=month&date={month:%Y-%m-%d}&scope=project&name=IDAaaS"
        ),
        "GET /carbon/history (year)": f"/carbon/history?view=year&date={month:%Y-%m-%d}",
        "GET /carbon/heatmap": f"/carbon/heatmap?year={month.year}",
    }


def wrk(url: str, clients: int, seconds: int) -> dict[str, float]:
    """p50 and p99 [ms] and requests/s of `url` under `clients` connections."""
    out = subprocess.run(
        ["wrk", "-t2", f"-c{clients}", f"-d{seconds}s", "--latency", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout

    def ms(label: str) -> float:
        value, unit = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()
        return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]

    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "p50": ms("50"),
        "p99": ms("99"),
        "rps": rate,
        "errors": int(errors.group(1)) if errors else 0,
    }


def seed_query_seconds() -> float | None:
    """One of the seed's per-request queries on bench.py's cached Prometheus: busy CPU-seconds
    of one group, hour by hour, over a month (None without the cache)."""
    from carbon_pipeline.demo.prometheus_server import PrometheusServer

    cached = sorted((Path(__file__).resolve().parents[1] / ".bench").glob("fleet-v2-*/data"))
    if not cached:
        return None
    server = PrometheusServer(cached[-1]).start()
    try:
        query = (
            'sum(increase(node_cpu_seconds_total{cloud_project_name="IDAaaS",'
            'machine_name="Muon",mode!~"idle|iowait"}[1h]))'
        )
        params = {
            "query": query,
            "start": "2025-03-01T01:00:00Z",
            "end": "2025-04-01T00:00:00Z",
            "step": "3600",
        }
        walls = []
        for _ in range(3):
            began = time.perf_counter()
            requests.get(
                server.url + "/api/v1/query_range", params=params, timeout=120
            ).raise_for_status()
            walls.append(time.perf_counter() - began)
        return min(walls)
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    from carbon_pipeline.database_url import DatabaseUrl
    from carbon_pipeline.demo import postgres

    parser = argparse.ArgumentParser(prog="python -m carbon_pipeline_tests.bench_api")
    parser.add_argument("--years", type=int, default=5)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument(
        "--workers", type=int, default=2, help="the API's (docs/api.md: one a core)"
    )
    parser.add_argument("--port", type=int, default=8089)
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        log("installing wrk (Debian's package) ...")
        subprocess.run(
            ["apt-get", "install", "-y", "--no-install-recommends", "wrk"],
            check=True,
            capture_output=True,
        )
    admin = postgres.admin_url()
    name = f"carbon_bench_queries_1000u_{args.years}y"
    if not bench_queries._exists(admin, name):
        log(f"filling bench (h)'s warehouse first ({args.years} year(s); kept for later runs) ...")
        bench_queries.main(["--years", str(args.years), "--keep"])
    url = postgres.database_url(admin, name)
    end = bench_queries._months(args.years)[-1]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            f"DO $$ BEGIN CREATE ROLE {LOGIN} LOGIN IN ROLE carbon_api; "
            "EXCEPTION WHEN duplicate_object THEN NULL; END $$"
        )
        group = conn.execute(
            "SELECT group_name FROM reporting.v_groups ORDER BY 1 LIMIT 1"
        ).fetchone()[0]
    env = {
        **os.environ,
        "API_DATABASE_URL": DatabaseUrl.parse(url).with_(user=LOGIN, password=None).render(),
        "API_REPORTING_NOW": f"{end:%Y-%m-%dT%H:%MZ}",
    }
    command = [
        str(Path(sys.executable).parent / "carbon-pipeline"),
        "api",
        "--port",
        str(args.port),
        "--workers",
        str(args.workers),
    ]
    api = subprocess.Popen(command, env=env)
    base = f"http://127.0.0.1:{args.port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(base + "/health", timeout=2).ok:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the API did not start")
            time.sleep(0.2)
        results = {}
        for label, path in routes(end, group).items():
            requests.get(base + path, timeout=30).raise_for_status()  # warm, and valid
            results[label] = wrk(base + path, args.clients, args.seconds)
            log(f"{label}: p99 {results[label]['p99']:.1f} ms")
    finally:
        api.terminate()
        api.wait(30)
    seed = seed_query_seconds()
    print(
        f"\n(i) the API on bench (h)'s warehouse (1,000 users, {args.years} year(s)): "
        f"{args.clients} concurrent clients (wrk), {args.workers} workers, {args.seconds} s a route\n"
    )
    print(
        f"{'route':44} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8}  target p99 <= {TARGET_P99_MS:.0f} ms"
    )
    for label, r in results.items():
        mark = "ok" if r["p99"] <= TARGET_P99_MS and not r["errors"] else "OVER"
        errors = f" ({r['errors']} errors)" if r["errors"] else ""
        print(f"{label:44} {r['p50']:8.1f} {r['p99']:8.1f} {r['rps']:8.0f}  {mark}{errors}")
    if seed is not None:
        print(
            f"\nthe seed's way: one increase(...[1h]) query_range for a group over a month, on "
            f"bench.py's 100-host Prometheus: {1000 * seed:.0f} ms a request, alone"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
