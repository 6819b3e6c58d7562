"""What the Dagster UI shows of the pipeline: an asset per warehouse table with its meaning,
owners, column schema (from the tables' COMMENTs) and checks; the sources upstream; the
analysts' views downstream; and per-materialisation metadata it can plot across partitions."""

from __future__ import annotations

import dagster as dg
import pytest

from carbon_pipeline import catalog
from carbon_pipeline.definitions import defs
from carbon_pipeline.tables import STAGE_TABLES
from carbon_pipeline_tests.conftest import materialize_range
from carbon_pipeline_tests.fleet_spec import t

TABLES = [table for tables in STAGE_TABLES.values() for table in tables]
EXPECTED_CHECKS = {
    "host_cpu_hourly": {"completeness"},
    "host_cpu_gaps": {"coverage"},
    "carbon_intensity_hourly": {"intensity_provenance"},
    "fact_usage_ada": {"conservation", "freshness"},
    "usage_rollup": {"conservation"},
    "reporting_release": {"disclosure"},
    "reporting_rollup": {"conservation"},
}
SOURCES = {"prometheus", "carbon_intensity_api", "workspace_registry", "power_model"}


def test_every_table_is_an_asset_described_owned_with_its_column_schema_and_checks():
    graph = defs.resolve_asset_graph()
    for table in TABLES:
        node = graph.get(dg.AssetKey(table))
        assert node.is_materializable and node.owners == ["team:ada-carbon"], table
        # The table's COMMENT, column by column: one source of meaning.
        assert node.description == catalog.description(table) and len(node.description) > 80
        schema = node.metadata["dagster/column_schema"]
        columns = [[c.name, c.type, c.description] for c in schema.columns]
        assert columns == catalog.entry(table)["columns"], table
        assert all(c.description for c in schema.columns), table
        assert node.metadata["dagster/table_name"] == f"public.{table}"
        assert "postgres" in node.kinds
        checks = {k.name for k in graph.asset_check_keys if k.asset_key == node.key}
        assert checks == EXPECTED_CHECKS.get(table, set()), table
    # One computation per stage still: the tables of a stage are written by one op.
    ops = {graph.get(dg.AssetKey(t)).assets_def.node_def.name for t in TABLES}
    assert ops == set(STAGE_TABLES)


def test_the_sources_are_upstream_and_the_views_downstream():
    graph = defs.resolve_asset_graph()

    def parents(key: str) -> set[str]:
        return {p.to_user_string() for p in graph.get(dg.AssetKey(key)).parent_keys}

    assert parents("host_cpu_hourly") == {"prometheus"}
    assert parents("host_cpu_gaps") == {"prometheus", "workspace_registry"}
    assert parents("carbon_intensity_regional_hourly") == {"carbon_intensity_api"}
    assert parents("fact_usage_instance") == {
        "host_cpu_hourly",
        "carbon_intensity_hourly",
        "carbon_intensity_regional_hourly",
        "power_model",
    }
    assert parents("fact_usage_user") == {"fact_usage_instance", "workspace_registry"}
    for source in SOURCES:
        node = graph.get(dg.AssetKey(source))
        assert not node.is_materializable and node.group_name == "sources"
        assert node.description and len(node.description) > 80
        assert node.owners or node.is_observable
    assert parents("usage_rollup") == {f"fact_usage_{s}" for s in catalog_scopes()}
    assert parents("reporting_release") == {
        *(f"fact_usage_{s}" for s in catalog_scopes()[:-1]),
        "fact_usage_workspace",
    }
    assert parents("reporting_rollup") == {"reporting_release"}
    # The analysts' lifetime views read the rollups, the hourly ones the facts.
    assert parents("v_user_averages") == {"usage_rollup"}
    assert parents("v_usage_total") == {"usage_rollup"}
    assert parents("v_usage_hourly") == {f"fact_usage_{s}" for s in catalog_scopes()}
    views = [k for k in graph.get_all_asset_keys() if graph.get(k).group_name == "views"]
    assert {k.to_user_string() for k in views} == set(catalog.views())
    for key in views:
        assert graph.get(key).metadata["dagster/column_schema"].columns


def catalog_scopes() -> list[str]:
    return ["ada", "project", "machine", "group", "user"]


SUMMARY = {
    "host_cpu_hourly": {"hosts", "busy_cpu_seconds", "seconds"},
    "carbon_intensity_hourly": {
        "mean_intensity_gco2eq_per_kwh",
        "estimated_share",
        "hours_fallback",
    },
    "carbon_intensity_regional_hourly": {"regions"},
    "fact_usage_instance": {"total_busy_kwh", "total_idle_gco2eq", "seconds"},
    "fact_usage_ada": {"total_busy_kwh", "total_busy_gco2eq", "seconds"},
}


def test_materialisations_carry_row_counts_and_plottable_metadata(resources, database_url):
    """Every partition's materialisation carries the rows written; the stage's summary goes on
    a one-hour run's materialisation, and a ranged run's once, on an observation of its last
    hour (not copied onto every hour of the window, as Dagster would)."""
    from carbon_pipeline_tests.conftest import read_table

    instance = dg.DagsterInstance.ephemeral()
    ranged = materialize_range(
        resources,
        t("2025-03-03T10:00"),
        t("2025-03-03T12:00"),
        instance=instance,
        with_freshness=True,
    )
    assert ranged.success
    for table in TABLES:
        events = instance.fetch_materializations(dg.AssetKey(table), limit=10).records
        assert {e.partition_key for e in events} == {"2025-03-03-10:00", "2025-03-03-11:00"}
        for event in events:
            metadata = event.asset_materialization.metadata
            assert set(metadata) == {"dagster/row_count"}, table
            # The rows the run wrote into the table: what the table holds for its two hours.
            if table != "workspace_session":  # the sessions touched, not a slice of the table
                assert metadata["dagster/row_count"].value == rows_written(database_url, table)
        observations = instance.fetch_observations(dg.AssetKey(table), limit=10).records
        if table not in SUMMARY:
            assert not observations, table
            continue
        (observation,) = observations
        assert observation.partition_key == "2025-03-03-11:00", table
        summary = observation.asset_observation.metadata
        assert SUMMARY[table] <= set(summary), table
        assert summary["window_first_hour"].value == "2025-03-03-10:00"
        assert summary["window_last_hour"].value == "2025-03-03-11:00"
    evaluations = [e for e in ranged.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    assert {
        (
            e.asset_check_evaluation_data.asset_key.to_user_string(),
            e.asset_check_evaluation_data.check_name,
        )
        for e in evaluations
    } == {(table, check) for table, checks in EXPECTED_CHECKS.items() for check in checks}
    # The window's totals, as the tables hold them.
    for table, entry, column in [
        ("fact_usage_ada", "total_busy_kwh", "busy_kwh"),
        ("host_cpu_hourly", "busy_cpu_seconds", "busy_cpu_seconds_total"),
    ]:
        (observation,) = instance.fetch_observations(dg.AssetKey(table), limit=1).records
        (total,) = read_table(
            database_url,
            f"SELECT sum({column}) AS total FROM {table} WHERE timestamp_utc >= %s "
            "AND timestamp_utc < %s",
            (t("2025-03-03T10:00"), t("2025-03-03T12:00")),
        )["total"]
        assert total > 0
        assert observation.asset_observation.metadata[entry].value == pytest.approx(
            float(total), rel=1e-12
        )

    one_hour = materialize_range(
        resources, t("2025-03-03T12:00"), t("2025-03-03T13:00"), instance=instance
    )
    assert one_hour.success
    for table in TABLES:
        (event,) = instance.fetch_materializations(dg.AssetKey(table), limit=1).records
        assert event.partition_key == "2025-03-03-12:00"
        assert SUMMARY.get(table, set()) | {"dagster/row_count"} <= set(
            event.asset_materialization.metadata
        ), table
        assert len(instance.fetch_observations(dg.AssetKey(table), limit=10).records) <= 1, table


def rows_written(database_url: str, table: str) -> int:
    """The rows a run of 2025-03-03 10:00-12:00 wrote into the table."""
    from carbon_pipeline_tests.conftest import read_table

    if table.endswith("_rollup"):  # the day's rows, its month's, its year's, every lifetime
        query = (
            f"SELECT count(*) AS n FROM {table} WHERE grain = 'lifetime' OR "
            "(grain, period_start) IN "
            "(('day', '2025-03-03'), ('month', '2025-03-01'), ('year', '2025-01-01'))"
        )
        return int(read_table(database_url, query)["n"].iloc[0])
    query = f"SELECT count(*) AS n FROM {table} WHERE timestamp_utc >= %s AND timestamp_utc < %s"
    return int(
        read_table(database_url, query, (t("2025-03-03T10:00"), t("2025-03-03T12:00")))["n"].iloc[0]
    )
