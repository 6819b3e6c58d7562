"""What the Dagster UI shows of the pipeline: descriptions, owners, column schemas, checks,
and per-materialisation metadata it can plot across partitions."""

from __future__ import annotations

import dagster as dg

from carbon_pipeline.definitions import defs
from carbon_pipeline_tests.conftest import materialize_range
from carbon_pipeline_tests.fleet_spec import t

EXPECTED_CHECKS = {
    "host_cpu_seconds": {"completeness", "coverage"},
    "carbon_intensity": {"intensity_provenance"},
    "host_usage": set(),
    "usage_facts": {"conservation", "freshness"},
}


def test_every_asset_is_described_owned_and_has_a_column_schema():
    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.description and len(node.description) > 80, key
        assert node.owners, key
        schema = node.metadata["dagster/column_schema"]
        assert schema.columns and all(c.description for c in schema.columns), key
        checks = {k.name for k in graph.asset_check_keys if k.asset_key == key}
        assert checks == EXPECTED_CHECKS[key.to_user_string()]


def test_materialisations_carry_plottable_metadata(resources):
    instance = dg.DagsterInstance.ephemeral()
    result = materialize_range(
        resources, t("2025-03-03T10:00"), t("2025-03-03T12:00"), instance=instance
    )
    assert result.success
    wanted = {
        "host_cpu_seconds": {
            "dagster/row_count",
            "hosts",
            "busy_cpu_seconds",
            "rejected_host_hours",
        },
        "carbon_intensity": {"mean_intensity_gco2eq_per_kwh", "estimated_share", "hours_fallback"},
        "host_usage": {"dagster/row_count", "total_busy_kwh", "total_idle_gco2eq"},
        "usage_facts": {"total_busy_kwh", "total_busy_gco2eq", "workspace_sessions", "seconds"},
    }
    for asset, keys in wanted.items():
        events = instance.fetch_materializations(dg.AssetKey(asset), limit=10).records
        assert {e.partition_key for e in events} == {"2025-03-03-10:00", "2025-03-03-11:00"}
        metadata = events[0].asset_materialization.metadata
        assert keys <= set(metadata), (asset, set(metadata))
    evaluations = [e for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    assert {e.asset_check_evaluation_data.check_name for e in evaluations} == {
        "completeness",
        "coverage",
        "intensity_provenance",
        "conservation",
        "freshness",
    }
