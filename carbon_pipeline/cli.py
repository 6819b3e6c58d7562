"""`carbon-pipeline`: backfill a range through Dagster, migrate the warehouse, run the demo."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path


def _backfill(args: argparse.Namespace) -> int:
    # Imported here: the partitions read CARBON_PIPELINE_START when first imported.
    from dagster import DagsterInstance

    from carbon_pipeline.assets.common import REPLACE_SOURCES_TAG
    from carbon_pipeline.backfill import RangeError, backfill
    from carbon_pipeline.partitions import HOURS_PER_RUN
    from carbon_pipeline.times import parse_utc

    if not os.getenv("DAGSTER_HOME"):
        print(
            "error: set DAGSTER_HOME to the Dagster instance that should record the runs",
            file=sys.stderr,
        )
        return 2
    if args.replace_sources and args.from_stage != "sources":
        print("error: --replace-sources needs the sources stage (drop --from)", file=sys.stderr)
        return 2
    try:
        start, end = parse_utc(args.start), parse_utc(args.end)
        results = backfill(
            start,
            end,
            instance=DagsterInstance.get(),
            hours_per_run=HOURS_PER_RUN if args.hours_per_run is None else args.hours_per_run,
            from_stage=args.from_stage,
            tags={REPLACE_SOURCES_TAG: "true"} if args.replace_sources else None,
        )
    except (RangeError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for r in results:
        state = "succeeded" if r.success else "FAILED"
        print(
            f"{r.start:%Y-%m-%dT%H:%MZ} .. {r.end:%Y-%m-%dT%H:%MZ}  run {r.run_id}  {state}  {r.seconds:.1f} s"
        )
    failed = [r for r in results if not r.success]
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


def _migrate(args: argparse.Namespace) -> int:
    from carbon_pipeline.resources.warehouse import WarehouseResource

    url = os.getenv("DATABASE_URL")
    if not url:
        print("error: set DATABASE_URL", file=sys.stderr)
        return 2
    applied = WarehouseResource(database_url=url).migrate()
    print(f"applied: {', '.join(applied) if applied else 'nothing (up to date)'}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from carbon_pipeline.demo.run import run_demo

    return run_demo(Path(args.dir).resolve())


def _demo_ui(args: argparse.Namespace) -> int:
    from carbon_pipeline.demo.run import run_ui

    return run_ui(Path(args.dir).resolve(), args.port)


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
        help="hours per Dagster run (default CARBON_PIPELINE_BACKFILL_HOURS_PER_RUN or 744)",
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
    backfill.set_defaults(func=_backfill)

    commands.add_parser(
        "migrate", help="apply the warehouse migrations to DATABASE_URL"
    ).set_defaults(func=_migrate)

    demo = commands.add_parser("demo", help="run the whole pipeline on a generated month, locally")
    demo.add_argument("--dir", default=".demo", help="working folder (default .demo)")
    demo.set_defaults(func=_demo)

    demo_ui = commands.add_parser("demo-ui", help="the Dagster UI on the demo's data")
    demo_ui.add_argument("--dir", default=".demo")
    demo_ui.add_argument("--port", type=int, default=3000)
    demo_ui.set_defaults(func=_demo_ui)

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
