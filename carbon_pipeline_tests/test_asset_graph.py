"""The asset graph shows the warehouse (issue 20): its column schemas are the migrations'
COMMENTs, the README shows the real graph, and a changed source re-derives exactly the
hours it changes: the versions each hour was derived from, the observations that compare
them with today's, and what Dagster's automation asks for then."""

from __future__ import annotations

import itertools
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pandas as pd
import psycopg
import pytest

from carbon_pipeline import catalog
from carbon_pipeline.assets.sources import power_model_source, registry_source
from carbon_pipeline.attribution import hourly_shares
from carbon_pipeline.definitions import defs
from carbon_pipeline.derivation import NO_HOLDINGS, model_version, registry_versions, share_versions
from carbon_pipeline.graph import readme_graph, readme_section
from carbon_pipeline.partitions import PARTITION_KEY_FORMAT
from carbon_pipeline.resources import PowerModelResource, SitesResource
from carbon_pipeline.tables import STAGE_TABLES
from carbon_pipeline_tests.conftest import materialize_range, read_table
from carbon_pipeline_tests.fleet_spec import build_fleet, t
from carbon_pipeline_tests.test_daemon import start_deployment  # noqa: F401 (a fixture)
from carbon_pipeline_tests.test_record import registry_with

REPO = Path(__file__).resolve().parents[1]
START, END = t("2025-03-03T06:00"), t("2025-03-03T14:00")
FACTS = STAGE_TABLES["usage_facts"]
TABLES = [table for tables in STAGE_TABLES.values() for table in tables]
USAGE = STAGE_TABLES["fact_usage_instance"]


def test_the_catalog_is_what_the_migrations_say(database_url):
    with psycopg.connect(database_url) as conn:
        assert catalog.read_catalog(conn) == catalog.catalog(), (
            "sql/catalog.json differs from the migrations' COMMENTs: run `make catalog`"
        )


def test_the_readme_shows_the_real_graph():
    readme = (REPO / "README.md").read_text()
    assert readme_graph(readme) == readme_section(), (
        "README's asset graph is not the definitions': paste `carbon-pipeline graph`"
    )


def _holding(end: str | None, owner: str = "alice") -> pd.DataFrame:
    return pd.DataFrame(
        {
            "workspace_id": ["w1"],
            "hostname": ["172.16.0.1"],
            "ext_user_id": [owner],
            "held_from": [pd.Timestamp("2025-03-03T10:00Z")],
            "held_until": [pd.Timestamp(end) if end else pd.NaT],
        }
    )


def test_a_registry_version_changes_exactly_with_the_hours_holdings():
    start, end = t("2025-03-03T09:00"), t("2025-03-03T14:00")
    held = registry_versions(_holding("2025-03-03T12:30Z"), start, end)
    assert list(held.index) == list(pd.date_range(start, end, freq="h", inclusive="left"))
    assert held.iloc[0] == held.iloc[4] == NO_HOLDINGS  # 09:00 and 13:00: nobody
    assert held.iloc[1] == held.iloc[2] != held.iloc[3]  # whole hours alike, a half not
    # Deleted 15 minutes later: only 12:00 changes.
    later = registry_versions(_holding("2025-03-03T12:45Z"), start, end)
    assert list(later != held) == [False, False, False, True, False]
    # Another owner: every hour held changes; the same holding in any window, the same.
    bob = registry_versions(_holding("2025-03-03T12:30Z", owner="bob"), start, end)
    assert list(bob != held) == [False, True, True, True, False]
    wider = registry_versions(_holding("2025-03-03T12:30Z"), t("2025-03-01T00:00"), end)
    pd.testing.assert_series_equal(wider[held.index], held)
    # The facts digest chunk by chunk, from the shares they compute anyway: the same versions.
    holding = _holding("2025-03-03T12:30Z")
    bounds = [start, t("2025-03-03T11:00"), t("2025-03-03T12:00"), end]
    by_chunk = pd.concat(
        share_versions(hourly_shares(holding, a, b), a, b) for a, b in itertools.pairwise(bounds)
    )
    pd.testing.assert_series_equal(by_chunk, held)


def test_the_model_version_changes_with_any_number_it_uses(tmp_path):
    default = model_version(PowerModelResource(), SitesResource())
    assert default == model_version(PowerModelResource(), SitesResource())
    assert default != model_version(PowerModelResource(busy_watts_per_core=12.5), SitesResource())
    assert default != model_version(PowerModelResource(), SitesResource(default_pue=1.2))
    watts = tmp_path / "watts.csv"
    watts.write_text("machine_name,busy_watts_per_core,idle_watts_per_core\nMuon,12,1\n")
    one = model_version(PowerModelResource(overrides_file=str(watts)), SitesResource())
    watts.write_text("machine_name,busy_watts_per_core,idle_watts_per_core\nMuon,14,1\n")
    assert one != model_version(PowerModelResource(overrides_file=str(watts)), SitesResource())


def _hours(keys) -> set[datetime]:
    return {datetime.strptime(k, PARTITION_KEY_FORMAT).replace(tzinfo=UTC) for k in keys}


def _observed(instance, asset: str) -> set[datetime]:
    records = instance.fetch_observations(dg.AssetKey(asset), limit=10_000).records
    return _hours(r.partition_key for r in records)


def _requested(evaluation) -> dict[str, set[datetime]]:
    return {
        key.to_user_string(): _hours(evaluation.get_requested_partitions(key))
        for key in defs.resolve_asset_graph().get_all_asset_keys()
        if evaluation.get_num_requested(key)
    }


def test_a_changed_source_asks_for_exactly_the_hours_it_changed(resources, tmp_path, monkeypatch):
    """In process, step by step: the stored versions, the observations, the automation's
    requests. Dave's workspace (on .12, 06:30-20:45) is corrected to have ended at 09:15:
    hours 09:00-13:00 of the window change hands, 06:00-08:00 do not. Then the watts of one
    machine type change: every stored hour's host usage and facts are asked for."""
    monkeypatch.setenv("CARBON_REGISTRY_RECHECK_DAYS", "3650")  # the test's hours are old
    instance = dg.DagsterInstance.ephemeral()
    assert materialize_range(resources, START, END, instance=instance).success
    keys = [START + timedelta(hours=h) for h in range(8)]
    partition = keys[-1].strftime(PARTITION_KEY_FORMAT)

    def observe(source, **changed):
        """An observation run, as the automation launches one."""
        job = dg.Definitions(
            assets=[source],
            jobs=[dg.define_asset_job("observe", selection=[source.key])],
            resources={**resources, **changed},
        ).resolve_job_def("observe")
        assert job.execute_in_process(instance=instance, partition_key=partition).success

    now = datetime.now(UTC)
    first = dg.evaluate_automation_conditions(defs=defs, instance=instance, evaluation_time=now)
    # Nothing changed: the observations report no hour, nothing is asked for.
    observe(registry_source)
    observe(power_model_source)
    assert _observed(instance, "workspace_registry") == _observed(instance, "power_model") == set()

    fleet = build_fleet()
    corrected = [
        {**w, "deleted_time": t("2025-03-03T09:15")} if w["owner"] == "dave" else w
        for w in fleet.workspaces
    ]
    registry = registry_with(tmp_path, "dave_ended_early", workspaces=corrected)
    observe(registry_source, registry=registry)
    assert _observed(instance, "workspace_registry") == set(keys[3:])
    second = dg.evaluate_automation_conditions(
        defs=defs,
        instance=instance,
        evaluation_time=now + timedelta(seconds=1),
        cursor=first.cursor,
    )
    assert _requested(second) == dict.fromkeys(FACTS, set(keys[3:]))

    # The facts re-derived with the correction: the registry matches, nothing more to ask.
    selection = list(FACTS)
    assert materialize_range(
        {**resources, "registry": registry}, keys[3], END, instance=instance, selection=selection
    ).success
    observe(registry_source, registry=registry)
    assert _observed(instance, "workspace_registry") == set(keys[3:])  # no new observation
    third = dg.evaluate_automation_conditions(
        defs=defs,
        instance=instance,
        evaluation_time=now + timedelta(seconds=2),
        cursor=second.cursor,
    )
    assert _requested(third) == {}

    watts = tmp_path / "watts.csv"
    watts.write_text("machine_name,busy_watts_per_core,idle_watts_per_core\nMuon,15,1.5\n")
    observe(power_model_source, power_model=PowerModelResource(overrides_file=str(watts)))
    assert _observed(instance, "power_model") == set(keys)
    fourth = dg.evaluate_automation_conditions(
        defs=defs,
        instance=instance,
        evaluation_time=now + timedelta(seconds=3),
        cursor=third.cursor,
    )
    assert _requested(fourth) == dict.fromkeys([*USAGE, *FACTS], set(keys))


def test_each_hour_records_what_it_was_derived_from(resources, database_url):
    assert materialize_range(resources, START, END).success
    stored = read_table(
        database_url,
        "SELECT timestamp_utc, power_model_version, registry_version FROM hour_derivation "
        "ORDER BY 1",
    )
    assert list(stored["timestamp_utc"]) == list(
        pd.date_range(START, END, freq="h", inclusive="left")
    )
    assert set(stored["power_model_version"]) == {
        model_version(resources["power_model"], resources["sites"])
    }
    assert stored["registry_version"].notna().all()
    assert stored["registry_version"].nunique() > 1  # the holdings change within the day


HOURLY = (
    "SELECT scope, scope_name, timestamp_utc, busy_kwh, idle_kwh, busy_gco2eq, idle_gco2eq, "
    "full_kwh, full_gco2eq FROM v_usage_hourly ORDER BY scope, scope_name, timestamp_utc"
)


def _new_partitions(instance, tables, since: dict[str, int]) -> dict[str, set[datetime]]:
    """{table: hours} materialised after the storage ids `since`."""
    new = {}
    for table in tables:
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey(table), after_storage_id=since[table]),
            limit=10_000,
        ).records
        if records:
            new[table] = _hours(r.partition_key for r in records)
    return new


def _wait_for_rederivation(instance, since, expected: dict[str, set], seconds=300) -> None:
    """Until every table has materialised its `expected` hours since `since`, and no run that
    writes a table is going on (the sources' observations run every minute meanwhile)."""
    deadline = time.monotonic() + seconds
    going = [
        dg.DagsterRunStatus.QUEUED,
        dg.DagsterRunStatus.NOT_STARTED,
        dg.DagsterRunStatus.STARTING,
        dg.DagsterRunStatus.STARTED,
    ]
    while time.monotonic() < deadline:
        new = _new_partitions(instance, list(expected), since)
        writing = [
            run
            for run in instance.get_runs(filters=dg.RunsFilter(statuses=going))
            if {k.to_user_string() for k in run.asset_selection or ()} & set(TABLES)
        ]
        if all(new.get(t, set()) >= hours for t, hours in expected.items()) and not writing:
            return
        time.sleep(2)
    raise AssertionError(f"not re-derived within {seconds} s: {new}, going on: {writing}")


def _storage_ids(instance) -> dict[str, int]:
    return {
        t: instance.fetch_materializations(dg.AssetKey(t), limit=1).records[0].storage_id
        for t in TABLES
    }


@pytest.mark.daemon
@pytest.mark.slow(seconds=110)
def test_corrections_rederive_by_themselves_through_the_daemon(
    start_deployment,  # noqa: F811 (the fixture imported above)
    resources,
    create_database,
    intensity_periods,
    tmp_path,
    request,
):
    """A deployment's daemon, nobody at the keyboard: late actuals re-materialise the
    intensity, usage and facts of the hours they improve, a registry correction the facts of
    the hours it changes, a changed power-model file the usage and facts of every stored
    hour; the sources' tables are not asked again, and the warehouse equals a fresh derivation
    with the corrected inputs. (All three at once: each observation waits for a cron minute.)"""
    from carbon_pipeline.demo.fleet import Fleet
    from carbon_pipeline.demo.intensity_server import IntensityServer
    from carbon_pipeline.demo.loader import write_registry_seed
    from carbon_pipeline.resources import CarbonIntensityResource

    # The API has no actuals yet for 06:00-09:00 (forecasts only).
    late = intensity_periods.copy()
    pending = (late["period_from"] >= START) & (late["period_from"] < t("2025-03-03T09:00"))
    late.loc[pending, "actual"] = float("nan")
    api = IntensityServer(late).start()
    request.addfinalizer(api.stop)

    watts = tmp_path / "watts.csv"
    watts.write_text("machine_name,busy_watts_per_core,idle_watts_per_core\nMuon,12,1\n")
    registry = registry_with(tmp_path, "daemon_registry")
    deployed = {
        **resources,
        "registry": registry,
        "power_model": PowerModelResource(overrides_file=str(watts)),
        "carbon_intensity_api": CarbonIntensityResource(api_url=api.url, retries=0),
    }
    env = start_deployment(
        CARBON_INTENSITY_API_URL=api.url,
        CARBON_INTENSITY_RECHECK_SECONDS="30",
        CARBON_INTENSITY_RECHECK_DAYS="3650",
        MONGO_DATABASE=registry.database,
        MONGO_SEED_DIR=registry.seed_dir,
        CARBON_POWER_MODEL_FILE=str(watts),
        CARBON_PIPELINE_AUTOMATION_STATUS="RUNNING",
        CARBON_PIPELINE_AUTOMATION_SECONDS="5",
        CARBON_SOURCES_OBSERVE_CRON="* * * * *",
        CARBON_REGISTRY_RECHECK_DAYS="3650",
        CARBON_PIPELINE_CATCHUP_DAYS="0",
    )
    instance = dg.DagsterInstance.get()
    assert materialize_range(deployed, START, END, instance=instance).success
    hours = {START + timedelta(hours=h) for h in range(8)}
    before = read_table(env["DATABASE_URL"], HOURLY)

    # At once, nobody at the keyboard: the actuals are published; Dave's workspace is corrected
    # to have ended at 09:15, not 20:45 (in the seed the deployment reads); Muon's busy cores
    # draw 15 W, not 12.
    fleet = build_fleet()
    corrected = [
        {**w, "deleted_time": t("2025-03-03T09:15")} if w["owner"] == "dave" else w
        for w in fleet.workspaces
    ]
    since = _storage_ids(instance)
    api.periods = intensity_periods.sort_values("period_from", ignore_index=True)
    write_registry_seed(
        Fleet(fleet.hosts, workspaces=corrected, users=fleet.users, groups=fleet.groups),
        Path(registry.seed_dir),
    )
    watts.write_text("machine_name,busy_watts_per_core,idle_watts_per_core\nMuon,15,1\n")

    # While the deployment waits for its next observation: a fresh derivation with the
    # corrected inputs, to compare with.
    reference = create_database()
    fresh = {
        **resources,
        "warehouse": type(resources["warehouse"])(database_url=reference),
        "registry": registry_with(tmp_path, "daemon_reference", workspaces=corrected),
        "power_model": PowerModelResource(overrides_file=str(watts)),
    }
    assert materialize_range(fresh, START, END).success

    # The actuals sensor asks for the intensity, usage and facts of 06:00-08:00; the
    # observations of the registry and the power model make the automation ask for the usage
    # and facts of every stored hour (the registry's hours, 09:00-13:00, among them: that it
    # asks for exactly those alone is test_a_changed_source_asks_for_exactly_the_hours_it_changed).
    improved = {h for h in hours if h < t("2025-03-03T09:00")}
    expected_runs = {
        **dict.fromkeys(STAGE_TABLES["carbon_intensity"], improved),
        **dict.fromkeys([*USAGE, *FACTS], hours),
    }
    _wait_for_rederivation(instance, since, expected_runs)
    assert _new_partitions(instance, TABLES, since) == expected_runs
    after = read_table(env["DATABASE_URL"], HOURLY)
    pd.testing.assert_frame_equal(after, read_table(reference, HOURLY))
    dave = after["scope_name"] == "dave"
    assert after[dave]["busy_kwh"].sum() < before[before["scope_name"] == "dave"]["busy_kwh"].sum()
    stored = read_table(
        env["DATABASE_URL"],
        "SELECT DISTINCT intensity_source FROM carbon_intensity_hourly "
        "WHERE timestamp_utc >= %s AND timestamp_utc < %s",
        (START, END),
    )
    assert set(stored["intensity_source"]) == {"actual"}
