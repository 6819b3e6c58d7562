"""`carbon-pipeline`: backfill a range through Dagster, migrate the warehouse, serve the API, run
the demo."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def _backfill(args: argparse.Namespace) -> int:
    # Imported here: the partitions read CARBON_PIPELINE_START when first imported.
    from dagster import DagsterInstance

    from carbon_pipeline import instance
    from carbon_pipeline.assets.common import REPLACE_SOURCES_TAG
    from carbon_pipeline.backfill import STAGES, RangeError, backfill
    from carbon_pipeline.partitions import HOURS_PER_RUN
    from carbon_pipeline.terminal import RunReporter, quiet
    from carbon_pipeline.times import parse_utc

    if args.replace_sources and args.from_stage != "sources":
        print("error: --replace-sources needs the sources stage (drop --from)", file=sys.stderr)
        return 2
    run_config = quiet(args.verbose)
    try:
        start, end = parse_utc(args.start), parse_utc(args.end)
        instance.prepare(sqlite=args.sqlite)
        with RunReporter(STAGES[args.from_stage]) as reporter:
            results = backfill(
                start,
                end,
                instance=DagsterInstance.get(),
                hours_per_run=HOURS_PER_RUN if args.hours_per_run is None else args.hours_per_run,
                from_stage=args.from_stage,
                tags={REPLACE_SOURCES_TAG: "true"} if args.replace_sources else None,
                run_config=run_config,
                reporter=reporter,
            )
            failed = [r for r in results if not r.success]
            reporter.summary(len(results), len(failed))
    except (RangeError, ValueError, instance.InstanceError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if failed:
        f = failed[0]
        print(
            f"error: the run for {f.start:%Y-%m-%dT%H:%MZ} .. {f.end:%Y-%m-%dT%H:%MZ} failed (see it in "
            f"the UI); hours before it are stored. Resume with: carbon-pipeline backfill "
            f"--start {f.start:%Y-%m-%dT%H:%MZ} --end {args.end}",
            file=sys.stderr,
        )
        return 1
    return 0


def _ui(args: argparse.Namespace) -> int:
    from carbon_pipeline import instance
    from carbon_pipeline.ui import serve

    try:
        return serve(args.host, args.port, verbose=args.verbose, sqlite=args.sqlite)
    except instance.InstanceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _migrate(args: argparse.Namespace) -> int:
    from carbon_pipeline.config import env_int
    from carbon_pipeline.resources.warehouse import WarehouseResource

    url = os.getenv("DATABASE_URL")
    if not url:
        print("error: set DATABASE_URL", file=sys.stderr)
        return 2
    min_users = env_int("CARBON_REPORTER_MIN_USERS", 0, minimum=0) or None
    warehouse = WarehouseResource(database_url=url, reporter_min_users=min_users)
    applied = warehouse.migrate()  # errors: see main()
    print(f"applied: {', '.join(applied) if applied else 'nothing (up to date)'}")
    return 0


def _catalog(args: argparse.Namespace) -> int:
    from carbon_pipeline.catalog import CATALOG_FILE, write_catalog
    from carbon_pipeline.resources.warehouse import WarehouseResource

    url = os.getenv("DATABASE_URL")
    if not url:
        print("error: set DATABASE_URL (a scratch database: it is migrated first)", file=sys.stderr)
        return 2
    warehouse = WarehouseResource(database_url=url)
    warehouse.migrate()
    with warehouse.connect() as conn:
        write_catalog(conn)
    print(f"wrote {CATALOG_FILE}")
    return 0


def _graph(args: argparse.Namespace) -> int:
    from carbon_pipeline.graph import readme_section

    print(readme_section(), end="")
    return 0


def _greenest(args: argparse.Namespace) -> int:
    import psycopg

    from carbon_pipeline.greenest import greenest_windows, report

    url = os.getenv("DATABASE_URL")
    if not url:
        print("error: set DATABASE_URL", file=sys.stderr)
        return 2
    if args.hours <= 0 or args.within < args.hours or args.best < 1:
        print("error: need --hours > 0, --within >= --hours and --best >= 1", file=sys.stderr)
        return 2
    try:
        with psycopg.connect(url) as conn:
            windows = greenest_windows(conn, args.hours, args.site, args.within, args.best)
    except psycopg.errors.RaiseException as exc:  # greenest_window's own message
        print(f"error: {exc.diag.message_primary}", file=sys.stderr)
        return 2
    print(report(windows, args.hours, args.site), end="")
    return 0


def _api(args: argparse.Namespace) -> int:
    import uvicorn

    from carbon_pipeline.api.settings import ApiSettings

    ApiSettings.from_env()  # a missing or malformed setting: one line, before any worker starts
    uvicorn.run(
        "carbon_pipeline.api.app:app_from_env",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level="warning",
        access_log=False,
    )
    return 0


def _demo(args: argparse.Namespace) -> int:
    from carbon_pipeline.demo.run import run_demo

    return run_demo(Path(args.dir).resolve(), verbose=args.verbose)


def _demo_api(args: argparse.Namespace) -> int:
    from carbon_pipeline.demo.run import run_api

    return run_api(Path(args.dir).resolve(), args.port)


def _demo_ui(args: argparse.Namespace) -> int:
    from carbon_pipeline.demo.run import run_ui

    return run_ui(Path(args.dir).resolve(), args.port, verbose=args.verbose)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="carbon-pipeline", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    backfill = commands.add_parser(
        "backfill", help="materialise every asset for [start, end) through Dagster"
    )
    backfill.add_argument(
        "--start", required=True, help="first hour, UTC, ISO 8601 (e.g. 2025-03-01T00:00Z)"
    )
    backfill.add_argument("--end", required=True, help="end of the range, exclusive")
    backfill.add_argument(
        "--hours-per-run",
        type=int,
        default=None,
        help="hours per Dagster run (default CARBON_PIPELINE_BACKFILL_HOURS_PER_RUN or 1460)",
    )
    backfill.add_argument(
        "--from",
        dest="from_stage",
        choices=["sources", "usage", "facts"],
        default="sources",
        help="first stage to run: sources (everything, the default), usage (re-derive host "
        "usage and facts from the stored sources: a new power model) or facts (re-attribute "
        "from the stored host usage: a registry correction); the later two never ask "
        "Prometheus or the API",
    )
    backfill.add_argument(
        "--replace-sources",
        action="store_true",
        help="replace the stored host-hours of the range with what Prometheus answers now, "
        "deleting those it no longer has (by default they are kept)",
    )
    _instance_options(backfill)
    backfill.set_defaults(func=_backfill)

    ui = commands.add_parser(
        "ui", help="the Dagster UI (webserver and daemon) on the pipeline's instance"
    )
    ui.add_argument("--port", type=int, default=3000)
    ui.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    _instance_options(ui)
    ui.set_defaults(func=_ui)

    commands.add_parser(
        "migrate", help="apply the warehouse migrations to DATABASE_URL"
    ).set_defaults(func=_migrate)

    commands.add_parser(
        "catalog",
        help="write sql/catalog.json (the tables' and views' COMMENTs) from a migrated DATABASE_URL",
    ).set_defaults(func=_catalog)
    commands.add_parser(
        "graph", help="print the README's asset table and diagram, from the definitions"
    ).set_defaults(func=_graph)

    greenest = commands.add_parser(
        "greenest",
        help="the greenest start times for a job of --hours, from the stored forecast",
    )
    greenest.add_argument("--hours", type=float, required=True, help="the job's length [h]")
    greenest.add_argument(
        "--site", default=None, help="a configured site (default: the GB national forecast)"
    )
    greenest.add_argument(
        "--within", type=float, default=48, help="the job must end within this many hours (48)"
    )
    greenest.add_argument("--best", type=int, default=3, help="how many start times (3)")
    greenest.set_defaults(func=_greenest)

    api = commands.add_parser(
        "api", help="serve the carbon monitoring API (the seed's routes) from the warehouse"
    )
    api.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    api.add_argument("--port", type=int, default=8000)
    api.add_argument(
        "--workers", type=int, default=2, help="worker processes (default 2: one per core here)"
    )
    api.set_defaults(func=_api)

    demo = commands.add_parser("demo", help="run the whole pipeline on a generated month, locally")
    demo.add_argument("--dir", default=".demo", help="working folder (default .demo)")
    demo.add_argument("--verbose", action="store_true", help="print Dagster's event log too")
    demo.set_defaults(func=_demo)

    demo_ui = commands.add_parser("demo-ui", help="the Dagster UI on the demo's data")
    demo_ui.add_argument("--dir", default=".demo")
    demo_ui.add_argument("--port", type=int, default=3000)
    demo_ui.add_argument("--verbose", action="store_true", help="print Dagster's own output")
    demo_ui.set_defaults(func=_demo_ui)

    demo_api = commands.add_parser("demo-api", help="the API on the demo's data")
    demo_api.add_argument("--dir", default=".demo")
    demo_api.add_argument("--port", type=int, default=8000)
    demo_api.set_defaults(func=_demo_api)

    args = parser.parse_args(argv)
    from carbon_pipeline.config import ConfigError
    from carbon_pipeline.resources.warehouse import WarehouseError, describe_connection_error
    from carbon_pipeline.secrets import mask_secrets

    try:
        return args.func(args)
    except (ConfigError, WarehouseError) as exc:
        print(f"error: {mask_secrets(str(exc))}", file=sys.stderr)
        return 2
    except Exception as exc:  # a database that cannot be reached: one line, not a traceback
        message = describe_connection_error(exc)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return 2


def _instance_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--verbose", action="store_true", help="print Dagster's event log and output as well"
    )
    parser.add_argument(
        "--sqlite",
        action="store_true",
        help="a new instance on SQLite instead of PostgreSQL (5-10x slower backfills)",
    )


if __name__ == "__main__":
    sys.exit(main())
