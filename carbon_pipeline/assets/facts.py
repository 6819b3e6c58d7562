"""Warehouse stage: host-hours attributed to every scope and to the workspaces that held them."""

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import dagster as dg
import pandas as pd
from psycopg.types.json import Jsonb

from carbon_pipeline import timing
from carbon_pipeline.ahead import asked_ahead
from carbon_pipeline.assets.common import (
    STAGE_DEFAULTS,
    Progress,
    bad_input_fails_at_once,
    materialized,
    table_spec,
    window,
)
from carbon_pipeline.attribution import (
    SCOPE_KEYS,
    UNATTRIBUTED,
    group_name,
    hourly_shares,
    scope_facts,
    workspace_usage,
)
from carbon_pipeline.automation import derived_condition
from carbon_pipeline.checks import (
    CONSERVATION,
    DISCLOSURE,
    conservation_gaps,
    release_problems,
    rollup_gaps,
)
from carbon_pipeline.derivation import share_versions
from carbon_pipeline.holdings import holdings, overlapping
from carbon_pipeline.resources import PipelineSettings, RegistryResource, WarehouseResource
from carbon_pipeline.resources.warehouse import (
    dimension_ids,
    ids_of,
    load_query,
    lock_dimensions,
)
from carbon_pipeline.schemas import WORKSPACE_FACT_SCHEMA, scope_fact_schema, validate
from carbon_pipeline.tables import (
    FACT_USAGE_INSTANCE,
    FACT_USAGE_WORKSPACE,
    REPORTING_RELEASE,
    REPORTING_ROLLUP,
    SCOPE_FACTS,
    SCOPE_ID_COLUMNS,
    STAGE_TABLES,
    USAGE_ROLLUP,
)
from carbon_pipeline.times import chunks
from carbon_pipeline.timing import phase

# What each rollup sums: the analysts' every scope's facts, carbon_reporter's its release, which
# is decided from the aggregates' facts and who held their hosts.
ROLLUP_DEPS = {
    USAGE_ROLLUP: [spec.name for spec in SCOPE_FACTS.values()],
    REPORTING_RELEASE: [
        *(spec.name for scope, spec in SCOPE_FACTS.items() if scope != "user"),
        FACT_USAGE_WORKSPACE.name,
    ],
    REPORTING_ROLLUP: [REPORTING_RELEASE],
}


@dg.multi_asset(
    name="usage_facts",
    **STAGE_DEFAULTS,
    specs=[
        table_spec(
            table,
            group="facts",
            kinds={"pandas"},
            deps=ROLLUP_DEPS.get(table, [FACT_USAGE_INSTANCE.name, "workspace_registry"]),
            automation_condition=derived_condition(),
        )
        for table in STAGE_TABLES["usage_facts"]
    ],
    check_specs=[
        dg.AssetCheckSpec(
            CONSERVATION,
            asset=SCOPE_FACTS["ada"].name,
            additional_deps=[SCOPE_FACTS[s].name for s in SCOPE_FACTS if s != "ada"],
            description=(
                "For every hour: the sum over projects = machines = groups = users (with "
                "unattributed) = ada."
            ),
        ),
        dg.AssetCheckSpec(
            CONSERVATION,
            asset=USAGE_ROLLUP,
            description=(
                "For the days, months and years a run touched, and every lifetime, every "
                "scope's rollup equals the sum of its hourly facts, column by column (sums, "
                "counts of hours, estimated and unknown hours): days against the facts, months "
                "against days, years against months, lifetimes against years."
            ),
        ),
        dg.AssetCheckSpec(
            DISCLOSURE,
            asset=REPORTING_RELEASE,
            description=(
                "For the window's hours: no row of fewer people than reporting_policy's "
                "min_users, and where the platform is shown, each scope's rows add up to it "
                "(each scope's rows are a partition of the platform's hour)."
            ),
        ),
        dg.AssetCheckSpec(
            CONSERVATION,
            asset=REPORTING_ROLLUP,
            description=(
                "As usage_rollup's, against reporting_release: days against its hours, months "
                "against days, years against months, lifetimes against years."
            ),
        ),
    ],
)
@bad_input_fails_at_once
def usage_facts(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    registry: RegistryResource,
    settings: PipelineSettings,
):
    """Hourly electricity and carbon of the whole platform (ada), every project, machine type,
    group, user and workspace (tables `fact_usage_*`), every workspace session with what
    it has accumulated (`workspace_session`), and their daily and monthly sums the analysts'
    views read (`usage_rollup`). A host-hour goes to the workspaces that held the
    host in proportion to how long each held it; the rest to the user `unattributed`."""
    start, end = window(context)
    progress = Progress(context, start, end)
    worst_gap = 0.0
    totals = dict.fromkeys(
        ("busy_kwh", "idle_kwh", "busy_gco2eq", "idle_gco2eq", "full_kwh", "full_gco2eq"), 0.0
    )
    sessions_touched: set[int] = set()
    versions: list[pd.Series] = []
    registry_problems: set[str] = set()
    specs = [*SCOPE_FACTS.values(), FACT_USAGE_WORKSPACE]
    # Windows never wait on each other: dimensions, sessions and bridges are written in short
    # transactions of their own (their ids never change), and the sessions' totals, which
    # span windows, are recomputed after the window's facts are committed.
    chunk_hours = settings.chunk_hours_for(warehouse.hosts_in_window(start, end))
    # The window's holdings, read once: the registry is asked once a window, not once a chunk.
    window_intervals, problems = holdings(registry, warehouse, start, end, context.run.run_id)
    registry_problems.update(problems)
    with warehouse.replace_window(start, end, specs) as writer:
        for chunk_start, chunk_end, usage in asked_ahead(
            lambda s, e: warehouse.read_window("fact_usage_instance_window", s, e),
            chunks(start, end, chunk_hours),
        ):
            intervals = overlapping(window_intervals, chunk_start, chunk_end)
            with phase("transform"):
                shares = hourly_shares(intervals, chunk_start, chunk_end)
                versions.append(share_versions(shares, chunk_start, chunk_end))
                facts = scope_facts(usage, shares)
                facts = {
                    scope: validate(scope_fact_schema(scope, SCOPE_KEYS[scope]), frame)
                    for scope, frame in facts.items()
                }
                held = validate(WORKSPACE_FACT_SCHEMA, workspace_usage(usage, shares))
                worst_gap = max(worst_gap, conservation_gaps(facts))
            with warehouse.connect() as short:
                lock_dimensions(short)
                ids = _dimension_ids(short, registry, facts, intervals)
                _bridge_project_users(short, usage, shares, ids)
                session_ids = _upsert_sessions(short, intervals, held, ids)
            rows = _write_scope_facts(writer, facts, ids)
            rows += writer.copy(
                FACT_USAGE_WORKSPACE.name,
                held.assign(workspace_session_id=ids_of(held["workspace_id"], session_ids)),
            )
            sessions_touched.update(session_ids.values())
            for key in totals:
                totals[key] += float(facts["ada"][key].sum())
            progress.chunk_done(chunk_start, chunk_end, rows)
    warehouse.record_derivation("registry_version", pd.concat(versions))

    def session_totals() -> None:
        with phase("postgres_write"), warehouse.connect() as short:
            recompute_session_totals(
                short,
                sessions_touched,
                start,
                end,
                correct=lambda: _keep_sessions_right(short, window_intervals, datetime.now(UTC)),
                workspace_ids=window_intervals["workspace_id"].tolist(),
            )

    def rollups() -> tuple[dict[str, int], dict[str, float], dict[str, float]]:
        with warehouse.connect() as short:
            rows = refresh_rollups(short, start, end)
        with phase("release"), warehouse.connect() as short:
            release = release_problems(short, start, end)
        with phase("rollups"), warehouse.connect() as short:
            gaps = {t: rollup_gaps(short, start, end, (t,)) for t in rows if t != REPORTING_RELEASE}
        return rows, gaps, release

    # From the facts now committed, each in a short transaction of its own and a thread of its
    # own (PostgreSQL does the work): the sessions' totals, and the analysts' rollups of the
    # days, months and years the window touched with their check; meanwhile Dagster records
    # the facts' materialisations (an event per table and hour), which is work of its own.
    with ThreadPoolExecutor(2, thread_name_prefix="after-window") as aside:
        totals_done = aside.submit(session_totals)
        rollups_done = aside.submit(rollups)
        for problem in sorted(registry_problems):
            context.log.warning(f"registry: {problem}")
        for spec in [*SCOPE_FACTS.values(), FACT_USAGE_WORKSPACE]:
            if spec is not SCOPE_FACTS["ada"]:
                yield materialized(context, spec.name, writer.rows[spec.name])
        totals_done.result()
        yield materialized(context, "workspace_session", len(sessions_touched))
        rollup_rows, rollup_gap, release = rollups_done.result()
    # After the rollups, so that its summary's seconds are the whole stage's; before them,
    # which sum it (a multi-asset yields in the graph's order).
    yield materialized(
        context,
        SCOPE_FACTS["ada"].name,
        writer.rows[SCOPE_FACTS["ada"].name],
        **progress.finish(),
        **{f"total_{k}": v for k, v in totals.items()},
        registry_problems=len(registry_problems),
    )
    yield dg.AssetCheckResult(
        asset_key=SCOPE_FACTS["ada"].name,
        check_name=CONSERVATION,
        passed=worst_gap <= 1e-6,
        metadata={"largest_relative_gap": worst_gap},
    )
    for table, rows in rollup_rows.items():
        yield materialized(context, table, rows)
        if table == REPORTING_RELEASE:
            yield dg.AssetCheckResult(
                asset_key=table,
                check_name=DISCLOSURE,
                passed=release["rows_below_min_users"] == 0
                and release["hours_without_every_scope"] == 0
                and release["largest_relative_gap"] <= 1e-9,
                metadata=release,
            )
            continue
        yield dg.AssetCheckResult(
            asset_key=table,
            check_name=CONSERVATION,
            passed=rollup_gap[table] <= 1e-9,
            metadata={"largest_relative_gap": rollup_gap[table]},
        )


def refresh_rollups(conn, start: datetime, end: datetime) -> dict[str, int]:
    """The release of [start, end)'s hours decided again, and the rollups recomputed for the
    days touching them, their months and years, and every lifetime (from facts already
    committed); {table: rows written}. The database's seconds on each go to the phases
    release and rollups."""
    began = time.perf_counter()
    written = conn.execute(
        "SELECT rollup_table, rows_written, seconds FROM public.carbon_refresh_rollups(%s, %s)",
        (start, end),
    ).fetchall()
    releasing = sum(s for table, _, s in written if table == f"public.{REPORTING_RELEASE}")
    timing.add("release", releasing)
    timing.add("rollups", time.perf_counter() - began - releasing)
    return {table.removeprefix("public."): rows for table, rows, _ in written}


def recompute_session_totals(
    conn,
    ids: set[int],
    start: datetime,
    end: datetime,
    correct: Callable[[], None] = lambda: None,
    workspace_ids: Sequence[str] = (),
) -> None:
    """Totals over every hour stored, not increments (re-running a window changes nothing),
    of the sessions `ids`, of the workspaces `workspace_ids` and of every session
    overlapping [start, end). The rows are locked first, in id order, then `correct` may
    change their times, and they are summed in a statement of its own: of two runs
    recomputing one session, the second sums after the first committed, so neither run's
    hours go missing, and runs never wait on each other in opposite orders."""
    params = {"ids": sorted(ids), "start": start, "end": end, "ext_ids": sorted(workspace_ids)}
    locked = [row[0] for row in conn.execute(load_query("workspace_totals_lock"), params)]
    correct()
    conn.execute(load_query("workspace_totals"), {"ids": locked})


def _keep_sessions_right(conn, intervals: pd.DataFrame, now: datetime) -> None:
    """The registry's past kept right, for every stored session of the window's workspaces
    (not only those overlapping a chunk): a session the registry shows takes its times as
    corrected there, wherever they fall, and records that the registry showed it now; one
    the registry no longer has and that was open ends when the registry last showed it.
    Their rows are locked already (recompute_session_totals)."""
    shown = intervals[intervals["in_registry"]]
    ended = intervals[~intervals["in_registry"] & intervals["held_until"].notna()]
    conn.execute(
        "UPDATE workspace_session w SET started_at = v.started_at, ended_at = v.ended_at "
        "FROM unnest(%(ids)s::text[], %(started)s::timestamptz[], %(ended)s::timestamptz[]) "
        "AS v (workspace_ext_id, started_at, ended_at) "
        "WHERE w.workspace_ext_id = v.workspace_ext_id "
        "AND (w.started_at, w.ended_at) IS DISTINCT FROM (v.started_at, v.ended_at)",
        {
            "ids": shown["workspace_id"].tolist(),
            "started": [t.to_pydatetime() for t in shown["held_from"]],
            "ended": [None if pd.isna(t) else t.to_pydatetime() for t in shown["held_until"]],
        },
    )
    conn.execute(
        "UPDATE workspace_session SET last_seen_at = %(now)s "
        "WHERE workspace_ext_id = ANY(%(ids)s) "
        "AND (last_seen_at IS NULL OR last_seen_at < %(now)s)",
        {"now": now, "ids": shown["workspace_id"].tolist()},
    )
    conn.execute(
        "UPDATE workspace_session w SET ended_at = v.ended_at "
        "FROM unnest(%(ids)s::text[], %(ended)s::timestamptz[]) AS v (workspace_ext_id, ended_at) "
        "WHERE w.workspace_ext_id = v.workspace_ext_id AND w.ended_at IS NULL",
        {
            "ids": ended["workspace_id"].tolist(),
            "ended": [t.to_pydatetime() for t in ended["held_until"]],
        },
    )


def _dimension_ids(conn, registry: RegistryResource, facts, intervals) -> dict[str, dict]:
    """{scope: {name: id}} for the chunk's projects, machines, groups and users (the owners
    of every workspace included, with display names from the registry), and its hosts."""
    owners = pd.concat([facts["user"]["ext_user_id"], intervals["ext_user_id"]]).drop_duplicates()
    owners = owners[owners != UNATTRIBUTED]
    names = registry.users(owners.tolist())
    users = pd.DataFrame({"ext_user_id": owners}).merge(
        names, left_on="ext_user_id", right_on="platform_name", how="left"
    )
    named = users["display_name"].notna()
    # A user the registry has a name for gets it; one it no longer has keeps the stored name.
    user_ids = dimension_ids(
        conn,
        "dim_user",
        "ext_user_id",
        "user_id",
        users.loc[named, ["ext_user_id", "display_name"]],
        ["display_name"],
    )
    user_ids.update(
        dimension_ids(
            conn,
            "dim_user",
            "ext_user_id",
            "user_id",
            pd.concat(
                [users.loc[~named, ["ext_user_id"]], pd.DataFrame({"ext_user_id": [UNATTRIBUTED]})]
            ),
        )
    )
    _enrich_groups(conn, registry.groups(facts["group"]["group_name"].drop_duplicates().tolist()))
    return {
        "project": dimension_ids(
            conn,
            "dim_project",
            "cloud_project_name",
            "project_id",
            facts["project"][["cloud_project_name"]],
        ),
        "machine": dimension_ids(
            conn, "dim_machine", "machine_name", "machine_id", facts["machine"][["machine_name"]]
        ),
        "group": dimension_ids(
            conn, "dim_group", "group_name", "group_id", facts["group"][["group_name"]]
        ),
        "user": user_ids,
        "instance": dimension_ids(
            conn,
            "dim_instance",
            "hostname",
            "instance_id",
            intervals[["hostname"]].drop_duplicates(),
            only_existing=True,
        ),
    }


def _write_scope_facts(writer, facts, ids) -> int:
    rows = 0
    for scope, frame in facts.items():
        id_column = SCOPE_ID_COLUMNS[scope]
        if id_column:
            (key,) = SCOPE_KEYS[scope]
            frame = frame.assign(**{id_column: ids_of(frame[key], ids[scope])})
        rows += writer.copy(SCOPE_FACTS[scope].name, frame)
    return rows


def _upsert_sessions(conn, intervals, held, ids) -> dict[str, int]:
    """A workspace_session per workspace of the chunk (who, which host, when), with the
    machine, project and group its host had in its latest hour here; {workspace_id: id}."""
    sessions = pd.DataFrame(
        {
            "workspace_ext_id": intervals["workspace_id"],
            "hostname": intervals["hostname"],
            "instance_id": intervals["hostname"].map(ids["instance"]).astype("Int64"),
            "user_id": intervals["ext_user_id"].map(ids["user"]).astype("Int64"),
            "started_at": intervals["held_from"],
            "ended_at": intervals["held_until"],
        }
    )
    session_ids = dimension_ids(
        conn,
        "workspace_session",
        "workspace_ext_id",
        "workspace_session_id",
        sessions,
        ["hostname", "instance_id", "user_id", "started_at", "ended_at"],
    )
    latest = held.sort_values(
        ["timestamp_utc", "cloud_project_name", "machine_name"], kind="stable"
    )
    latest = latest.drop_duplicates("workspace_id", keep="last")
    latest = latest.assign(
        group_name=group_name(latest["cloud_project_name"], latest["machine_name"])
    )
    labels = sorted(
        (
            session_ids[w],
            ids["machine"][m],
            ids["project"][p],
            ids["group"][g],
            hour.to_pydatetime(),
        )
        for w, p, m, g, hour in latest[
            ["workspace_id", "cloud_project_name", "machine_name", "group_name", "timestamp_utc"]
        ].itertuples(index=False)
    )
    names = ("id", "machine", "project", "group", "hour")
    with phase("postgres_write"), conn.cursor() as cur:
        # Only from hours at least as recent as the stored ones: a backfill of an older
        # window never rewinds a session's labels.
        cur.executemany(
            "UPDATE workspace_session SET machine_id = %(machine)s, project_id = %(project)s, "
            "group_id = %(group)s, labels_as_of = %(hour)s "
            "WHERE workspace_session_id = %(id)s "
            "AND (labels_as_of IS NULL OR labels_as_of <= %(hour)s) "
            "AND (machine_id, project_id, group_id, labels_as_of) "
            "IS DISTINCT FROM (%(machine)s, %(project)s, %(group)s, %(hour)s)",
            [dict(zip(names, label, strict=True)) for label in labels],
        )
    return session_ids


def _enrich_groups(conn, documents: list[dict]) -> None:
    with conn.cursor() as cur:
        cur.executemany(
            "UPDATE dim_group SET attributes = %(attributes)s WHERE group_name = %(name)s "
            "AND attributes IS DISTINCT FROM %(attributes)s",
            [
                {
                    "attributes": Jsonb({k: v for k, v in d.items() if k != "name"}),
                    "name": d["name"],
                }
                for d in sorted(documents, key=lambda d: d["name"])
            ],
        )


def _bridge_project_users(conn, usage, shares, ids) -> None:
    held = shares.merge(
        usage[["timestamp_utc", "hostname", "cloud_project_name"]], on=["timestamp_utc", "hostname"]
    )
    pairs = held[["cloud_project_name", "ext_user_id"]].drop_duplicates()
    pairs = pairs[pairs["ext_user_id"] != UNATTRIBUTED]
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO bridge_project_user (project_id, user_id) VALUES (%s, %s) ON CONFLICT DO NOTHING",
            sorted((ids["project"][p], ids["user"][u]) for p, u in pairs.itertuples(index=False)),
        )
