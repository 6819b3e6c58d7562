"""Usage stage: electricity and carbon per host-hour, and its attribution to every scope."""

import dagster as dg
import pandas as pd
from psycopg.types.json import Jsonb

from carbon_pipeline.ahead import asked_ahead
from carbon_pipeline.assets.common import (
    STAGE_DEFAULTS,
    Progress,
    bad_input_fails_at_once,
    materialized,
    table_spec,
    window,
)
from carbon_pipeline.attribution import group_name, refuse_colliding_groups
from carbon_pipeline.automation import derived_condition
from carbon_pipeline.derivation import model_version
from carbon_pipeline.energy import instance_usage
from carbon_pipeline.resources import (
    PipelineSettings,
    PowerModelResource,
    SitesResource,
    WarehouseResource,
)
from carbon_pipeline.resources.warehouse import dimension_ids, ids_of, lock_dimensions
from carbon_pipeline.schemas import INSTANCE_USAGE_SCHEMA, validate
from carbon_pipeline.tables import FACT_USAGE_INSTANCE, STAGE_TABLES
from carbon_pipeline.times import chunks
from carbon_pipeline.timing import phase


@dg.multi_asset(
    name="fact_usage_instance",
    **STAGE_DEFAULTS,
    specs=[
        table_spec(
            FACT_USAGE_INSTANCE.name,
            group="usage",
            kinds={"pandas"},
            deps=[
                *STAGE_TABLES["host_cpu_seconds"][:1],
                *STAGE_TABLES["carbon_intensity"],
                "power_model",
            ],
            automation_condition=derived_condition(),
        )
    ],
)
@bad_input_fails_at_once
def fact_usage_instance(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    power_model: PowerModelResource,
    sites: SitesResource,
    settings: PipelineSettings,
) -> dg.MaterializeResult:
    """Electricity [kWh] and carbon [gCO2eq] of every host-hour (table fact_usage_instance).
    The seed's footprint: busy and idle, W/core of the host's machine type x CPU seconds /
    3.6e6, times the hour's national intensity. Beside it the full one: memory, the site's
    facility overhead (PUE), the server's embodied carbon, and the carbon at the site's
    regional intensity (docs/methodology.md)."""
    start, end = window(context)
    progress = Progress(context, start, end)
    version = model_version(power_model, sites)
    totals = dict.fromkeys(
        ("busy_kwh", "idle_kwh", "busy_gco2eq", "idle_gco2eq", "full_kwh", "full_gco2eq"), 0.0
    )
    unknown_memory = unknown_regional = 0
    chunk_hours = settings.chunk_hours_for(warehouse.hosts_in_window(start, end))
    with warehouse.replace_window(start, end, [FACT_USAGE_INSTANCE]) as writer:
        inputs = ("host_cpu_window", "intensity_window", "regional_intensity_window")
        for chunk_start, chunk_end, (cpu, intensity, regional) in asked_ahead(
            lambda s, e: [warehouse.read_window(query, s, e) for query in inputs],
            chunks(start, end, chunk_hours),
        ):
            # What is read back was validated when it was written: validate what is new.
            with phase("transform"):
                model = power_model.model_for(cpu["machine_name"]).join(
                    sites.site_of(cpu["cloud_project_name"])
                )
                regional = regional.rename(
                    columns={"intensity_gco2eq_per_kwh": "regional_intensity_gco2eq_per_kwh"}
                )
                usage = instance_usage(cpu, intensity, model, regional)
                usage = validate(INSTANCE_USAGE_SCHEMA, usage)
                unknown_memory += int(usage["memory_gib"].isna().sum())
                unknown_regional += int(usage["regional_intensity_gco2eq_per_kwh"].isna().sum())
            with warehouse.connect() as short:  # its own short transaction
                lock_dimensions(short)
                rows = _with_dimension_ids(short, usage)
            writer.copy(FACT_USAGE_INSTANCE.name, rows)
            for key in totals:
                totals[key] += float(usage[key].sum())
            progress.chunk_done(chunk_start, chunk_end, len(rows))
    if unknown_memory:
        context.log.warning(
            f"{unknown_memory} host-hour(s) have no memory size from Prometheus "
            "(node_memory_MemTotal_bytes): their full footprint is unknown (NULL), never 0"
        )
    if unknown_regional:
        context.log.warning(
            f"{unknown_regional} host-hour(s) have no regional intensity stored (history from "
            "before migration 0008): their regional_gco2eq is unknown (NULL); materialise "
            "carbon_intensity for those hours to fill it"
        )
    warehouse.record_derivation(
        "power_model_version",
        pd.Series(version, index=pd.date_range(start, end, freq="h", inclusive="left")),
    )
    yield materialized(
        context,
        FACT_USAGE_INSTANCE.name,
        writer.rows[FACT_USAGE_INSTANCE.name],
        **progress.finish(),
        **{f"total_{k}": v for k, v in totals.items()},
        host_hours_without_memory=unknown_memory,
        host_hours_without_regional_intensity=unknown_regional,
    )


def latest_labels(usage: pd.DataFrame) -> pd.DataFrame:
    """One row per host: the one of its latest hour, and of two label sets in that hour (it
    was relabelled mid-hour) the last by name, whatever order the rows came in."""
    ordered = usage.sort_values(
        ["hostname", "timestamp_utc", "cloud_project_name", "machine_name"], kind="stable"
    )
    return ordered.drop_duplicates("hostname", keep="last")


def group_ids(conn, groups: pd.DataFrame) -> dict[str, int]:
    """{group_name: group_id} for the groups' (group_name, cloud_project_name, machine_name),
    creating the missing ones; refuses a name that stands for another project and machine
    than the one stored (GroupNameError). The unique name decides atomically: of two runs
    bringing colliding pairs at once, the second waits for the first's commit, then sees its
    pair and is refused. Only missing rows, and rows stored without their pair, are written."""
    columns = ["group_name", "cloud_project_name", "machine_name"]
    names = sorted(groups["group_name"].unique().tolist())
    select = "SELECT group_name, group_id, cloud_project_name, machine_name FROM dim_group WHERE group_name = ANY(%s)"
    with phase("postgres_write"), conn.cursor() as cur:
        cur.execute(select, (names,))
        stored = {row[0]: row for row in cur.fetchall()}
        pairs = groups.sort_values("group_name")[columns].itertuples(index=False, name=None)
        missing = [p for p in pairs if p[0] not in stored or stored[p[0]][2] is None]
        if missing:
            cur.executemany(
                "INSERT INTO dim_group (group_name, cloud_project_name, machine_name) "
                "VALUES (%s, %s, %s) ON CONFLICT (group_name) DO UPDATE SET "
                "cloud_project_name = EXCLUDED.cloud_project_name, "
                "machine_name = EXCLUDED.machine_name WHERE dim_group.cloud_project_name IS NULL",
                missing,
            )
            cur.execute(select, (names,))
            stored = {row[0]: row for row in cur.fetchall()}
    refuse_colliding_groups(
        pd.concat(
            [
                groups[columns],
                pd.DataFrame([(r[0], r[2], r[3]) for r in stored.values()], columns=columns),
            ],
            ignore_index=True,
        )
    )
    return {name: row[1] for name, row in stored.items()}


def _with_dimension_ids(conn, usage: pd.DataFrame) -> pd.DataFrame:
    """usage with instance, project, machine and group ids, creating missing dimension rows."""
    usage = usage.assign(group_name=group_name(usage["cloud_project_name"], usage["machine_name"]))
    latest = latest_labels(usage)
    instances = pd.DataFrame(
        {
            "hostname": latest["hostname"],
            "labels_as_of": latest["timestamp_utc"],
            "labels": [
                Jsonb({"cloud_project_name": p, "machine_name": m})
                for p, m in zip(latest["cloud_project_name"], latest["machine_name"], strict=True)
            ],
        }
    )
    machines = usage.drop_duplicates("machine_name")
    machines = pd.DataFrame(
        {
            "machine_name": machines["machine_name"],
            "attributes": [
                Jsonb({"busy_watts_per_core": b, "idle_watts_per_core": i})
                for b, i in zip(
                    machines["busy_watts_per_core"], machines["idle_watts_per_core"], strict=True
                )
            ],
        }
    )
    groups = usage.drop_duplicates(["group_name", "cloud_project_name", "machine_name"])[
        ["group_name", "cloud_project_name", "machine_name"]
    ]
    ids = {
        "instance_id": dimension_ids(
            conn,
            "dim_instance",
            "hostname",
            "instance_id",
            instances,
            ["labels", "labels_as_of"],
            as_of_column="labels_as_of",
        ),
        "project_id": dimension_ids(
            conn, "dim_project", "cloud_project_name", "project_id", usage[["cloud_project_name"]]
        ),
        "machine_id": dimension_ids(
            conn, "dim_machine", "machine_name", "machine_id", machines, ["attributes"]
        ),
        "group_id": group_ids(conn, groups),
    }
    keys = {
        "instance_id": "hostname",
        "project_id": "cloud_project_name",
        "machine_id": "machine_name",
        "group_id": "group_name",
    }
    for id_column, name_column in keys.items():
        usage[id_column] = ids_of(usage[name_column], ids[id_column])
    pairs = (
        usage[["project_id", "group_id"]].drop_duplicates().sort_values(["project_id", "group_id"])
    )
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO bridge_project_group (project_id, group_id) VALUES (%s, %s) ON CONFLICT DO NOTHING",
            pairs.itertuples(index=False, name=None),
        )
    return usage
