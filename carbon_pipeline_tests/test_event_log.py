"""The instance's event log (carbon_pipeline.event_log) stores a ranged run exactly as
dagster-postgres does: the same events, tags, asset index and check executions, read back
the same through Dagster's API; only faster."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import dagster as dg
import psycopg
import pytest
import yaml

from carbon_pipeline.event_log import BulkPostgresEventLogStorage
from carbon_pipeline.instance import dagster_postgres_url
from carbon_pipeline.partitions import hourly_partitions, range_tags
from carbon_pipeline_tests.fleet_spec import t

START = t("2025-03-03T00:00")
HOURS = 30
REPO = Path(__file__).resolve().parents[1]
KEYS = ["first", "second", "third", "downstream"]
STOCK_CONFIG = {"storage": {"postgres": {"postgres_url": {"env": "DAGSTER_POSTGRES_URL"}}}}


@dg.multi_asset(
    specs=[dg.AssetSpec("first"), dg.AssetSpec("second"), dg.AssetSpec("third", deps=["first"])],
    check_specs=[
        dg.AssetCheckSpec("sound", asset="first"),
        dg.AssetCheckSpec("complete", asset="third"),
    ],
    partitions_def=hourly_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
)
def stage():
    for key, rows in (("first", 3), ("second", 0), ("third", 7)):
        yield dg.MaterializeResult(asset_key=key, metadata={"dagster/row_count": rows})
    yield dg.AssetCheckResult(asset_key="first", check_name="sound", passed=True)
    yield dg.AssetCheckResult(asset_key="third", check_name="complete", passed=False)


@dg.asset(
    deps=["second", "third"],
    partitions_def=hourly_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
)
def downstream() -> None:
    return None


def instance_on(tmp_path, name, config, database_url, monkeypatch) -> dg.DagsterInstance:
    home = tmp_path / name
    home.mkdir()
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.setenv("DAGSTER_POSTGRES_URL", dagster_postgres_url(database_url))
    return dg.DagsterInstance.from_config(str(home))


def stored(instance: dg.DagsterInstance, database_url: str) -> dict:
    """What the run left, through Dagster's API and in the tables, without ids and times."""
    keys = [dg.AssetKey(key) for key in KEYS]
    with psycopg.connect(database_url) as conn:

        def rows(query: str) -> list[tuple]:
            return sorted(conn.execute(query).fetchall(), key=repr)

        tables = {
            "events": rows(
                "SELECT dagster_event_type, asset_key, partition, count(*) FROM event_logs "
                "GROUP BY 1, 2, 3"
            ),
            # each tag on the event of its own asset and partition
            "tags": rows(
                "SELECT t.asset_key, t.key, e.partition FROM asset_event_tags t "
                "JOIN event_logs e ON e.id = t.event_id AND e.asset_key = t.asset_key"
            ),
            "checks": rows(
                "SELECT asset_key, check_name, partition, execution_status "
                "FROM asset_check_executions"
            ),
        }
    latest = {key: instance.get_latest_materialization_event(key) for key in keys}
    return {
        **tables,
        "materialized": {key: instance.get_materialized_partitions(key) for key in keys},
        "latest": {key: event.dagster_event.partition for key, event in latest.items()},
        "row_count": {
            key: event.asset_materialization.metadata.get("dagster/row_count")
            for key, event in latest.items()
        },
    }


@pytest.mark.parametrize("batch_size", ["10000", "7"])
def test_bulk_event_log_stores_a_ranged_run_as_dagster_postgres_does(
    create_database, tmp_path, monkeypatch, batch_size
):
    monkeypatch.setenv("DAGSTER_EVENT_BATCH_SIZE", batch_size)
    monkeypatch.setenv("DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS", "1")
    ours_config = yaml.safe_load((REPO / "deploy" / "dagster.yaml").read_text())
    results = {}
    for name, config in (("stock", STOCK_CONFIG), ("ours", ours_config)):
        database_url = create_database(empty=True)
        instance = instance_on(tmp_path, name, config, database_url, monkeypatch)
        result = dg.materialize(
            [stage, downstream],
            instance=instance,
            tags=range_tags(START, START + timedelta(hours=HOURS)),
            raise_on_error=False,
        )
        assert result.success
        results[name] = stored(instance, database_url)
        if name == "ours":
            assert isinstance(instance.event_log_storage, BulkPostgresEventLogStorage)
    assert results["ours"] == results["stock"]
    # and what both hold is the run: every key and hour once, its checks per hour
    hours = {(START + timedelta(hours=n)).strftime("%Y-%m-%d-%H:%M") for n in range(HOURS)}
    ours = results["ours"]
    assert all(partitions == hours for partitions in ours["materialized"].values())
    assert set(ours["latest"].values()) == {max(hours)}
    assert [row for row in ours["events"] if row[0] == "ASSET_MATERIALIZATION"] == sorted(
        (("ASSET_MATERIALIZATION", f'["{key}"]', hour, 1) for key in KEYS for hour in hours),
        key=repr,
    )
    assert len(ours["tags"]) >= len(KEYS) * HOURS
    # Dagster plans an unpartitioned check of a partitioned run once per partition and records
    # its result once, for no partition: the planned rows stay planned, in both storages.
    assert ours["checks"] == sorted(
        [('["first"]', "sound", hour, "PLANNED") for hour in hours]
        + [('["third"]', "complete", hour, "PLANNED") for hour in hours]
        + [('["first"]', "sound", None, "SUCCEEDED"), ('["third"]', "complete", None, "FAILED")],
        key=repr,
    )
    assert ours["row_count"][dg.AssetKey("third")].value == 7
