"""Windows that never wait on each other, and chunks and answers sized by the fleet, against
the real services."""

from __future__ import annotations

import threading
import time

import dagster as dg
import psycopg
import pytest

from carbon_pipeline.checks import rollup_gaps
from carbon_pipeline.demo.fleet import Fleet, FleetHost
from carbon_pipeline.demo.loader import load_history, write_registry_seed
from carbon_pipeline.demo.prometheus_server import PrometheusServer
from carbon_pipeline.resources import PipelineSettings, PrometheusResource, RegistryResource
from carbon_pipeline_tests.conftest import materialize_range, read_table
from carbon_pipeline_tests.fleet_spec import t
from carbon_pipeline_tests.test_quality import assert_same, snapshot

MARCH, APRIL, MAY = t("2025-03-30T00:00"), t("2025-04-01T00:00"), t("2025-04-03T00:00")


@pytest.fixture(scope="module")
def two_months(tmp_path_factory):
    """Three hosts across the end of March, one workspace holding a host across it (its
    session spans both windows)."""
    hosts = [
        FleetHost(f"10.8.0.{n}:9100", "IDAaaS", "Muon", 2, MARCH, MAY, "constant:0.5")
        for n in (1, 2, 3)
    ]
    workspaces = [
        {"hostname": "10.8.0.1", "owner": "alice", "created_time": t("2025-03-29T00:00")},
        {
            "hostname": "10.8.0.2",
            "owner": "bob",
            "created_time": t("2025-03-31T12:00"),
            "deleted_time": t("2025-04-01T12:00"),
        },
    ]
    fleet = Fleet(hosts, workspaces=workspaces, users=[], groups=[])
    root = tmp_path_factory.mktemp("two_months")
    load_history(fleet, MARCH, MAY, root / "data", root / "work")
    server = PrometheusServer(root / "data").start()
    seed = write_registry_seed(fleet, root / "registry")
    yield server, seed
    server.stop()


def resources_for(resources, two_months, name: str) -> dict:
    server, seed = two_months
    return {
        **resources,
        "prometheus": PrometheusResource(prometheus_url=server.url, retries=0),
        "registry": RegistryResource(
            mongo_uri="mongomock://localhost", database=name, seed_dir=str(seed)
        ),
    }


def test_windows_of_shared_hosts_and_sessions_never_wait_on_each_other(
    resources, database_url, create_database, two_months
):
    local = resources_for(resources, two_months, "ada_independent")
    # The hosts, dimensions and sessions exist already (an earlier run): as in production.
    assert materialize_range(local, MARCH, MAY).success
    clean = snapshot(database_url)
    # Run A (March) is stopped inside each stage's window transaction, holding whatever it
    # holds there, while run B (April: the same hosts, the same spanning session) runs
    # whole. If B waited on anything A holds, it could not finish. (The SHARE lock stops
    # A's delete of its March rows and lets everyone read them.)
    results: dict = {}

    def run_a(table: str) -> None:
        with dg.DagsterInstance.ephemeral() as instance:
            results[table] = materialize_range(local, MARCH, APRIL, instance=instance)

    for table in ("host_cpu_hourly", "fact_usage_instance", "fact_usage_user"):
        blocker = psycopg.connect(database_url)
        blocker.execute(f"LOCK TABLE {table}_y2025m03 IN SHARE MODE")
        a = threading.Thread(target=run_a, args=(table,))
        a.start()
        try:
            assert _wait_until_waiting(database_url, f"DELETE FROM {table}"), (
                f"run A never reached {table}"
            )
            with dg.DagsterInstance.ephemeral() as instance:
                b = materialize_range(local, APRIL, MAY, instance=instance)
            assert b.success, f"run B failed while A was held in {table}"
        finally:
            blocker.rollback()
            blocker.close()
            a.join(timeout=300)
        assert results[table].success
    assert_same(clean, snapshot(database_url))
    sessions = read_table(
        database_url,
        "SELECT u.ext_user_id, s.busy_cpu_seconds_total FROM workspace_session s "
        "JOIN dim_user u USING (user_id) ORDER BY 1",
    )
    # alice held .1 from 03-30 to 05-03 (all 96 hours), bob .2 for 24 hours across both windows.
    assert sessions.values.tolist() == [["alice", 96 * 3600.0], ["bob", 24 * 3600.0]]


APRIL_2, APRIL_2_NOON = t("2025-04-02T00:00"), t("2025-04-02T12:00")


def _run(local: dict, start, end, results: dict, key) -> None:
    with dg.DagsterInstance.ephemeral() as instance:
        results[key] = materialize_range(local, start, end, instance=instance)


def _wait_until_waiting(database_url: str, query_start: str, seconds: float = 120) -> bool:
    """Whether a session of the database waits on a lock in a statement starting so, within
    `seconds` (polled)."""
    deadline = time.monotonic() + seconds
    with psycopg.connect(database_url, autocommit=True) as watcher:
        while time.monotonic() < deadline:
            (waiting,) = watcher.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock' AND query ILIKE %s",
                (f"{query_start}%",),
            ).fetchone()
            if waiting:
                return True
            time.sleep(0.05)
    return False


def _hold_rows(database_url: str, table: str, start, end) -> psycopg.Connection:
    """A transaction holding a share lock on the stored rows of [start, end) of `table`: a
    window over them stops at its DELETE, holding whatever it holds by then."""
    blocker = psycopg.connect(database_url)
    blocker.execute(
        f"SELECT 1 FROM {table} WHERE timestamp_utc >= %s AND timestamp_utc < %s FOR SHARE",
        (start, end),
    )
    return blocker


@pytest.mark.parametrize("table", ["host_cpu_hourly", "fact_usage_instance", "fact_usage_user"])
def test_windows_of_one_month_wait_only_where_their_hours_overlap(
    resources, database_url, two_months, table
):
    local = resources_for(resources, two_months, f"ada_overlap_{table}")
    assert materialize_range(local, MARCH, MAY).success
    clean = snapshot(database_url)
    results: dict = {}
    # Disjoint hours of one month (April 1st, April 2nd): A stopped inside its window while B
    # runs whole.
    blocker = _hold_rows(database_url, table, APRIL, APRIL_2)
    a = threading.Thread(target=_run, args=(local, APRIL, APRIL_2, results, "a"))
    a.start()
    b = threading.Thread(target=_run, args=(local, APRIL_2, MAY, results, "b"))
    try:
        assert _wait_until_waiting(database_url, f"DELETE FROM {table}"), "A never got there"
        b.start()
        b.join(timeout=240)
        assert not b.is_alive(), f"B (disjoint hours) waited while A was held in {table}"
    finally:
        blocker.rollback()
        blocker.close()
        a.join(timeout=300)
        b.join(timeout=300)
    assert results["a"].success and results["b"].success
    assert_same(clean, snapshot(database_url))

    # Overlapping hours (A to April 2nd noon, B from April 2nd): B waits for A's hours, then
    # both complete and every row is there once.
    blocker = _hold_rows(database_url, table, APRIL, APRIL_2)
    a = threading.Thread(target=_run, args=(local, APRIL, APRIL_2_NOON, results, "a"))
    a.start()
    try:
        assert _wait_until_waiting(database_url, f"DELETE FROM {table}"), "A never got there"
        b = threading.Thread(target=_run, args=(local, APRIL_2, MAY, results, "b"))
        b.start()
        assert _wait_until_waiting(database_url, "SELECT name FROM write_lock"), "B never waited"
    finally:
        blocker.rollback()
        blocker.close()
        a.join(timeout=300)
    b.join(timeout=300)
    assert results["a"].success and results["b"].success
    assert_same(clean, snapshot(database_url))


def test_concurrent_windows_sharing_hosts_and_sessions_finish_exact(
    resources, database_url, two_months
):
    """Five windows at once over the same hosts, dimensions and the spanning sessions, two of
    them overlapping others, on a fresh warehouse (so they also create the months' partitions
    at once): no deadlock, no partition made twice, and exactly the rows one run over the
    range then leaves as they are."""
    local = resources_for(resources, two_months, "ada_concurrent")
    windows = [
        (MARCH, t("2025-03-31T06:00")),
        (t("2025-03-31T06:00"), APRIL),
        (APRIL, APRIL_2_NOON),
        (APRIL_2_NOON, MAY),
        (t("2025-03-31T12:00"), APRIL_2),
    ]
    results: dict = {}
    threads = [
        threading.Thread(target=_run, args=(local, start, end, results, n))
        for n, (start, end) in enumerate(windows)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    assert all(results[n].success for n in range(len(windows)))
    # The rollups of the days and months the windows share: whichever window rolled a day
    # up last saw every window's facts of it.
    with psycopg.connect(database_url) as conn:
        assert rollup_gaps(conn, MARCH, MAY) <= 1e-12
    concurrent = snapshot(database_url)
    assert materialize_range(local, MARCH, MAY).success
    assert_same(concurrent, snapshot(database_url))


def test_a_partition_made_while_a_window_waited_is_not_made_again(database_url):
    """Window X looks for a month's partition (its session may remember it missing), waits
    while window Y creates it, then goes on: it must see Y's partition, not create it again."""
    ensure = "SELECT carbon_ensure_month_partitions('host_cpu_hourly', %s, %s)"
    month = (t("2031-01-01T00:00"), t("2031-01-01T01:00"))
    x, y = psycopg.connect(database_url), psycopg.connect(database_url)
    errors: list = []

    def window_x() -> None:
        try:
            x.execute(ensure, month)
            x.commit()
        except psycopg.Error as exc:
            errors.append(exc)
            x.rollback()

    try:
        x.execute("SELECT to_regclass('public.host_cpu_hourly_y2031m01')")
        y.execute(ensure, month)  # Y creates it and holds on until it commits
        waiting = threading.Thread(target=window_x)
        waiting.start()
        assert _wait_until_waiting(database_url, "SELECT carbon_ensure_month_partitions")
        y.commit()
        waiting.join(timeout=60)
        assert not errors, errors
        (made,) = x.execute(
            "SELECT count(*) FROM pg_inherits WHERE inhparent = 'host_cpu_hourly'::regclass "
            "AND inhrelid = 'host_cpu_hourly_y2031m01'::regclass"
        ).fetchone()
        assert made == 1
    finally:
        x.close()
        y.close()


def test_an_answer_refused_for_its_size_is_asked_again_in_parts(
    resources, database_url, create_database, two_months, tmp_path
):
    server, seed = two_months
    # The same history, served by a Prometheus that refuses any query loading more than
    # 1,200 samples: two days of the busy query load more, half a day less.
    import shutil

    data = tmp_path / "data"
    shutil.copytree(
        server.data_dir, data, ignore=shutil.ignore_patterns("lock", "wal", "chunks_head")
    )
    small = PrometheusServer(data, log_file=tmp_path / "p.log", max_samples=1_200).start()
    try:
        with pytest.raises(Exception, match="too many samples"):
            PrometheusResource(prometheus_url=small.url, retries=0).query_range(
                PrometheusResource(prometheus_url=small.url).queries()["busy"], MARCH, APRIL
            )
        local = resources_for(resources, two_months, "ada_small")
        local["prometheus"] = PrometheusResource(prometheus_url=small.url, retries=0)
        local["settings"] = PipelineSettings(chunk_hours=48)  # the window in one chunk
        assert materialize_range(local, MARCH, APRIL).success
    finally:
        small.stop()
    hosts = read_table(
        database_url,
        "SELECT count(*) AS n, sum(busy_cpu_seconds_total) AS busy FROM host_cpu_hourly",
    ).iloc[0]
    assert (hosts["n"], hosts["busy"]) == (3 * 48, 3 * 48 * 3600.0)


def test_chunks_are_sized_by_the_fleet():
    settings = PipelineSettings(chunk_hours=744, chunk_host_hours=75_000)
    assert [settings.chunk_hours_for(h) for h in (0, 5, 100, 1_000, 10_000, 100_000)] == [
        744,
        744,
        744,
        75,
        7,
        1,
    ]


def test_a_window_writing_users_never_deadlocks_with_one_creating_partitions(
    resources, database_url
):
    """The deadlock (f) met with three backfills at once: a window inserting new users and
    then updating groups, and a window creating the next month's partitions, whose foreign
    keys lock groups and then users. A session holds groups as partition creation does while
    the facts' run writes its dimensions, then asks for users as partition creation does."""
    from carbon_pipeline.assets.facts import usage_facts
    from carbon_pipeline.assets.sources import carbon_intensity, host_cpu_seconds
    from carbon_pipeline.assets.usage import fact_usage_instance
    from carbon_pipeline.partitions import range_tags
    from carbon_pipeline.tables import FACT_USAGE_WORKSPACE, SCOPE_FACTS

    start, end = t("2025-03-03T06:00"), t("2025-03-03T09:00")
    with psycopg.connect(database_url, autocommit=True) as conn:  # the facts' months exist
        for table in [*(s.name for s in SCOPE_FACTS.values()), FACT_USAGE_WORKSPACE.name]:
            conn.execute(
                "SELECT carbon_ensure_month_partitions(%s, '2025-03-01', '2025-05-01')", (table,)
            )
    earlier = [host_cpu_seconds, carbon_intensity, fact_usage_instance]
    assert dg.materialize(earlier, resources=resources, tags=range_tags(start, end)).success
    outcome = {}

    def facts() -> None:  # its users are new: it inserts them before it updates groups
        outcome["run"] = dg.materialize(
            [usage_facts], resources=resources, tags=range_tags(start, end), raise_on_error=False
        )

    with psycopg.connect(database_url) as creator, psycopg.connect(database_url) as watcher:
        creator.execute("SET deadlock_timeout = '100ms'")
        creator.execute(
            "SELECT carbon_ensure_month_partitions('fact_usage_group', '2031-01-01', '2031-02-01')"
        )
        run = threading.Thread(target=facts)
        run.start()
        deadline, waiting = time.monotonic() + 120, []
        while not waiting and time.monotonic() < deadline:
            waiting = watcher.execute(
                "SELECT query FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock' AND pid <> %s",
                (creator.info.backend_pid,),
            ).fetchall()
            watcher.rollback()
            time.sleep(0.05)
        assert waiting, "the facts' run never waited on the partition creation"
        creator.execute(
            "SELECT carbon_ensure_month_partitions('fact_usage_user', '2031-01-01', '2031-02-01')"
        )
        creator.commit()
        run.join(timeout=300)
    assert outcome["run"].success
    users = read_table(database_url, "SELECT count(*) AS n FROM fact_usage_user")
    assert users["n"][0] > 0
