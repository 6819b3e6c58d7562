"""What carbon_reporter sees cannot be undone (issue 35, docs/security.md "What the reporter
sees"): on a small platform built to be attacked (disclosure_world.py), through the real
pipeline, a reporter login tries what the review tried, and an audit bounds every hidden group
by linear programming over everything the reporter can read.

- The release equals an independent computation of the rule (test_the_release_is_the_rule).
- The audit: for every hidden group-hour of 1 to k - 1 people, the interval its busy and idle
  energy can take, given every row, period, lifetime and range the reporter reads, the
  hierarchy's sums and non-negativity, is wider than the policy's margin either side of the
  true value (the p% rule); and again with CPU-seconds tied to energy by each machine type's
  watts, as a reporter who knows the power model would tie them.
- The review's five attacks, each of which recovered a person's numbers before migration 0016:
  subtraction across scopes, one person counted as many, presence, leaky functions and
  failing built-ins, and locks a reader can hold.
"""

from __future__ import annotations

import re
import uuid
from collections import defaultdict
from datetime import timedelta

import numpy as np
import pandas as pd
import psycopg
import pytest
from scipy.optimize import linprog

from carbon_pipeline.demo.intensity_server import IntensityServer, synthetic_periods
from carbon_pipeline.demo.loader import load_history, write_registry_seed
from carbon_pipeline.demo.prometheus_server import PrometheusServer, ensure_installed
from carbon_pipeline.resources import PowerModelResource, WarehouseResource
from carbon_pipeline_tests.conftest import local_resources, materialize_range, read_table
from carbon_pipeline_tests.disclosure_world import END, GROUPS, POWER_MODEL, START, build_world

K = 5  # the default policy
MARGIN = 0.1


@pytest.fixture(scope="module")
def world(tmp_path_factory, create_database):
    """The world's three days through the pipeline: (warehouse URL, who was where when, the
    resources that made it, its services still running for the module)."""
    ensure_installed()
    root = tmp_path_factory.mktemp("disclosure")
    fleet, present = build_world()
    load_history(fleet, START, END, root / "data", root / "work")
    prometheus = PrometheusServer(root / "data").start()
    api = IntensityServer(synthetic_periods(START - timedelta(days=1), END + timedelta(days=1)))
    api.start()
    try:
        seed = write_registry_seed(fleet, root / "registry")
        model = root / "power_model.csv"
        model.write_text(POWER_MODEL)
        url = create_database()
        resources = local_resources(url, (prometheus, None), api, seed, chunk_hours=24)
        resources["power_model"] = PowerModelResource(overrides_file=str(model))
        assert materialize_range(resources, START, END).success
        yield url, present, resources
    finally:
        prometheus.stop()
        api.stop()


@pytest.fixture(scope="module")
def reporter(world):
    """A fresh login of carbon_reporter (and nothing else): its URL."""
    url, *_ = world
    name = f"login_reporter_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{name}" LOGIN IN ROLE carbon_reporter')
    yield re.sub(r"://[^@/]*@", f"://{name}@", url, count=1)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'DROP OWNED BY "{name}"')
        conn.execute(f'DROP ROLE "{name}"')


def read(url: str, query: str, params=None) -> pd.DataFrame:
    return read_table(url, query, params)


def cells(url: str) -> pd.DataFrame:
    """The truth the reporter must not recover: every group-hour, with its project, machine
    type and people (the analysts' facts)."""
    return read(
        url,
        "SELECT f.timestamp_utc, g.group_name, g.cloud_project_name AS project, "
        "g.machine_name AS machine, f.users, f.busy_kwh, f.idle_kwh, f.busy_cpu_seconds_total "
        "FROM fact_usage_group f JOIN dim_group g USING (group_id) ORDER BY 1, 2",
    )


# ---- the rule, computed again from the world's truth -------------------------------------


def expected_release(truth: pd.DataFrame, present: dict, k: int, margin: float) -> dict:
    """{(hour, scope, name): (busy_kwh, idle_kwh, users, all_columns)} by docs/security.md's
    rule, from the world's own record of who was where (not the warehouse's)."""
    rows: dict = {}
    for hour, c in truth.groupby("timestamp_utc"):
        rows.update(_release_of_hour(hour, c.set_index("group_name"), present, k, margin))
    return rows


def _release_of_hour(hour, c: pd.DataFrame, present: dict, k: int, margin: float) -> dict:
    value = {g: (c.at[g, "busy_kwh"], c.at[g, "idle_kwh"]) for g in c.index}

    def people(groups) -> set[str]:
        return set().union(*(present[(hour.to_pydatetime(), g)] for g in groups))

    def passes(groups, sensitive) -> bool:
        """k people, and no sensitive group above 1 / (1 + margin) of the sum."""
        if len(people(groups)) < k:
            return False
        return all(
            not sensitive
            or max(value[g][m] for g in sensitive) * (1 + margin)
            <= sum(value[g][m] for g in groups)
            for m in (0, 1)
        )

    alone = {g for g in c.index if len(people([g])) >= k or k <= 1}
    other = defaultdict(list)
    for g in c.index:
        if g not in alone:
            other[c.at[g, "project"]].append(g)
    other_ok = {p: passes(gs, gs) for p, gs in other.items()}
    rest = [g for p, gs in other.items() if not other_ok[p] for g in gs]
    absorbed: list[str] = []
    rest_shown = bool(rest) and passes(rest, rest)
    if rest and not rest_shown:
        units = [("other", gs) for p, gs in other.items() if other_ok[p]]
        units += [("group", [g]) for g in alone]
        units.sort(key=lambda u: (sum(value[g][0] + value[g][1] for g in u[1]), u[0]))
        for part, gs in units:
            if passes(rest + gs, rest + (gs if part == "other" else [])):
                absorbed, rest_shown = gs, True
                break
    shown_alone = alone - set(absorbed)
    in_other = {g for p, gs in other.items() if other_ok[p] for g in gs} - set(absorbed)
    in_rest = set(rest) | set(absorbed)
    rows = {}

    def row(scope, name, groups, whole):
        n = len(people(groups))
        rows[(hour, scope, name)] = (
            sum(value[g][0] for g in groups),
            sum(value[g][1] for g in groups),
            n if n >= k else None,
            whole,
        )

    for g in shown_alone:
        row("group", g, [g], True)
    for p in {c.at[g, "project"] for g in in_other}:
        row("group", f"{p} (other groups)", [g for g in in_other if c.at[g, "project"] == p], False)
    platform_shown = not in_rest or rest_shown
    for scope in ("project", "machine"):
        shown_entities = []
        for entity in set(c[scope]):
            groups = list(c.index[c[scope] == entity])
            whole = all(g in shown_alone for g in groups)
            if whole or (scope == "project" and all(g in shown_alone | in_other for g in groups)):
                row(scope, entity, groups, whole)
                shown_entities.append(entity)
        left = [g for g in c.index if c.at[g, scope] not in shown_entities]
        if platform_shown and left:
            row(scope, "(rest of the platform)", left, False)
    if platform_shown:
        if in_rest:
            row("group", "(rest of the platform)", sorted(in_rest), False)
        row("ada", "ada", list(c.index), not in_rest and not in_other)
    return rows


def released(url: str) -> pd.DataFrame:
    return read(
        url,
        "SELECT timestamp_utc, scope, scope_name, busy_kwh, idle_kwh, users, all_columns, "
        "busy_cpu_seconds_total, full_gco2eq FROM reporting.v_usage_hourly "
        "ORDER BY 1, 2, 3",
    )


@pytest.mark.parametrize("k", [K, 3, 1])
def test_the_release_is_the_rule(world, k):
    """The stored release is the rule of docs/security.md, computed independently from the
    world's record of who held what (people counted once across groups), for three
    policies; a change of policy rewrites it (the trigger)."""
    url, present, _ = world
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE reporting_policy SET min_users = %s", (k,))
    try:
        truth = cells(url)
        want = expected_release(truth, present, k, MARGIN)
        got = released(url)
        keys = list(zip(got["timestamp_utc"], got["scope"], got["scope_name"], strict=True))
        assert sorted(keys) == sorted(want)
        for key, r in zip(keys, got.itertuples(), strict=True):
            busy, idle, users, whole = want[key]
            assert (r.busy_kwh, r.idle_kwh) == pytest.approx((busy, idle), rel=1e-9), key
            assert (None if pd.isna(r.users) else int(r.users)) == users, key
            assert r.all_columns == whole, key
            # A row of several groups' parts shows the seed's energy and carbon only.
            assert pd.isna(r.busy_cpu_seconds_total) == (not whole), key
            assert pd.isna(r.full_gco2eq) == (not whole), key
        if k > 1:
            # Each of the world's situations is in it (or the world tests nothing).
            shown = got.groupby("scope")["scope_name"].agg(set)
            assert "IDAaaS_SANS" not in shown["group"] and "SANS" not in shown["machine"]
            assert any(n.endswith("(other groups)") for n in shown["group"])
            assert "(rest of the platform)" in shown["project"]
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("UPDATE reporting_policy SET min_users = %s", (K,))


# ---- the audit: what every row the reporter reads allows of each hidden group ---------------

RANGES = [
    (START + timedelta(hours=5), START + timedelta(hours=30)),
    (START + timedelta(hours=13), END - timedelta(hours=7)),
    (START + timedelta(hours=9), START + timedelta(hours=10)),
]


def reporter_rows(url: str) -> list[tuple[str, str, list, dict]]:
    """Every number the reporter reads, as (scope, name, hours or None for a grain, values):
    the hours, every period and lifetime, usage_between over ranges, the lifetime totals and
    the shifting savings' months (docs/security.md lists what the role reads)."""
    hourly = read(url, "SELECT * FROM reporting.v_usage_hourly")
    periods = read(url, "SELECT * FROM reporting.v_usage_rollup")
    rows = []
    for r in hourly.itertuples():
        rows.append((r.scope, r.scope_name, [r.timestamp_utc], r._asdict()))
    following = {
        "day": pd.offsets.Day(),
        "month": pd.offsets.MonthBegin(),
        "year": pd.offsets.YearBegin(),
    }
    for r in periods.itertuples():
        hours = None  # a lifetime: every hour
        if r.grain != "lifetime":
            first = pd.Timestamp(r.period_start, tz="UTC")
            hours = list(
                pd.date_range(first, first + following[r.grain], freq="h", inclusive="left")
            )
        rows.append((r.scope, r.scope_name, hours, r._asdict()))
    for scope in ("ada", "project", "machine", "group"):
        for a, b in RANGES:
            between = read(url, "SELECT * FROM reporting.usage_between(%s, %s, %s)", (scope, a, b))
            for r in between.itertuples():
                hours = list(pd.date_range(a, b, freq="h", inclusive="left"))
                rows.append((r.scope, r.scope_name, hours, r._asdict()))
        name = {
            "ada": None,
            "project": "cloud_project_name",
            "machine": "machine_name",
            "group": "group_name",
        }[scope]
        total = read(url, f"SELECT * FROM reporting.v_{scope}_total")
        for r in total.itertuples():
            values = r._asdict()
            rows.append((scope, values[name] if name else "ada", None, values))
    savings = read(url, "SELECT * FROM reporting.v_shifting_savings")
    for r in savings.itertuples():
        first = pd.Timestamp(r.month, tz="UTC")
        hours = list(
            pd.date_range(first, first + pd.offsets.MonthBegin(), freq="h", inclusive="left")
        )
        rows.append((r.scope, r.scope_name, hours, r._asdict()))
    return rows


def coverage(truth: pd.DataFrame, hourly: pd.DataFrame):
    """line(scope, name, hours) -> which group-hours a row sums, as the reporter can tell from
    the hourly rows: a period sums the hours in which the row is shown; in an hour, a group is
    itself, a project's other groups are its groups not shown alone, a scope's rest is what
    its other rows leave of the platform, and a project, machine type or the platform is all
    of its groups."""
    groups_at = truth.groupby("timestamp_utc")["group_name"].agg(list).to_dict()
    hourly = hourly[hourly["busy_kwh"].notna()]  # (a row without numbers shows nothing)
    names_at = hourly.groupby(["timestamp_utc", "scope"])["scope_name"].agg(set).to_dict()
    shown = set(zip(hourly["scope"], hourly["scope_name"], hourly["timestamp_utc"], strict=True))
    of = {
        "project": {g: p for g, (p, _) in GROUPS.items()},
        "machine": {g: m for g, (_, m) in GROUPS.items()},
    }

    def covers(scope: str, name: str, hour) -> list[str]:
        here = groups_at.get(hour, [])
        names = names_at.get((hour, scope), set())
        if scope == "ada":
            return here
        if scope == "group":
            if name in GROUPS:
                return [name]
            if name.endswith(" (other groups)"):
                project = name.removesuffix(" (other groups)")
                return [g for g in here if of["project"][g] == project and g not in names]
            covered = {g for g in here if g in names}
            for other in names:
                if other.endswith(" (other groups)"):
                    covered |= set(covers("group", other, hour))
            return [g for g in here if g not in covered]
        if name.startswith("("):  # the rest of the platform
            return [g for g in here if of[scope][g] not in names]
        return [g for g in here if of[scope][g] == name]

    every_hour = sorted(groups_at)

    def line(scope: str, name: str, hours) -> list[tuple[str, pd.Timestamp]]:
        return [
            (g, hour)
            for hour in (every_hour if hours is None else hours)
            if (scope, name, hour) in shown
            for g in covers(scope, name, hour)
        ]

    return line


def audit(truth: pd.DataFrame, rows, line, measure: str, weights: dict | None = None):
    """[(group, hour, true value, least, most)] for every group-hour of 1 to K - 1 people with
    a value above 0: the range of `measure` that every row read, non-negativity and nothing
    else allow. With `weights` ({machine type: kWh per CPU-second}) the unknowns are busy
    CPU-seconds, and a row's busy_kwh reads as the weighted sum of its groups' CPU-seconds:
    CPU-seconds and energy tied by the power model, as a reporter who knows it would."""
    keys = list(zip(truth["group_name"], truth["timestamp_utc"], strict=True))
    index = {key: i for i, key in enumerate(keys)}
    unknown = "busy_cpu_seconds_total" if weights else measure
    true = truth[unknown].to_numpy(dtype=float)
    columns = [measure, "busy_cpu_seconds_total"] if weights else [measure]
    lines, values = [], []
    for scope, name, hours, row in rows:
        for column in columns:
            value = row.get(column)
            if value is None or pd.isna(value):
                continue
            coefficients = np.zeros(len(keys))
            for g, hour in line(scope, name, hours):
                tie = weights[GROUPS[g][1]] if weights and column == measure else 1.0
                coefficients[index[(g, hour)]] += tie
            lines.append(coefficients)
            values.append(float(value))
    a = np.array(lines)
    b = np.array(values)
    # Every row the reporter reads is true of the world, to rounding.
    assert np.allclose(a @ true, b, rtol=1e-9, atol=1e-12)
    slack = 1e-9 * np.maximum(np.abs(b), 1e-6)
    a_ub, b_ub = np.vstack([a, -a]), np.concatenate([b + slack, -(b - slack)])
    found = []
    sensitive = (truth["users"] >= 1) & (truth["users"] < K) & (truth[unknown] > 0)
    for i in np.flatnonzero(sensitive.to_numpy()):
        if not a[:, i].any():
            found.append((*keys[i], true[i], 0.0, np.inf))  # in no row: nothing bounds it
            continue
        c = np.zeros(len(keys))
        c[i] = 1.0
        least = linprog(c, A_ub=a_ub, b_ub=b_ub, bounds=(0, None), method="highs")
        most = linprog(-c, A_ub=a_ub, b_ub=b_ub, bounds=(0, None), method="highs")
        assert least.status == 0 and most.status in (0, 3), (least.message, most.message)
        found.append((*keys[i], true[i], least.fun, np.inf if most.status == 3 else -most.fun))
    return found


def _exposed(bounds, margin: float) -> list:
    """The hidden group-hours bounded closer than the margin on either side."""
    return [
        (g, h, v, lo, hi)
        for g, h, v, lo, hi in bounds
        if lo > v * (1 - margin) * (1 + 1e-7) or hi < v * (1 + margin) * (1 - 1e-7)
    ]


@pytest.fixture(scope="module")
def everything_read(world, reporter):
    url, *_ = world
    truth = cells(url)
    hourly = read(reporter, "SELECT * FROM reporting.v_usage_hourly")
    return truth, reporter_rows(reporter), coverage(truth, hourly)


@pytest.mark.parametrize("measure", ["busy_kwh", "idle_kwh"])
def test_no_hidden_group_is_bounded_closer_than_the_margin(everything_read, measure):
    truth, rows, line = everything_read
    bounds = audit(truth, rows, line, measure)
    # The world has hidden groups to find, in rows the reporter reads.
    assert len(bounds) > 100 and sum(np.isfinite(hi) for *_, hi in bounds) > 50
    assert _exposed(bounds, MARGIN) == []


def test_cpu_seconds_and_energy_together_bound_no_hidden_group(everything_read):
    truth, rows, line = everything_read
    model = pd.read_csv(pd.io.common.StringIO(POWER_MODEL)).set_index("machine_name")
    weights = (model["busy_watts_per_core"] / 3.6e6).to_dict()
    bounds = audit(truth, rows, line, "busy_kwh", weights)
    assert len(bounds) > 100
    assert _exposed(bounds, MARGIN) == []


# ---- the review's five attacks -------------------------------------------------------------


def test_1_no_subtraction_across_scopes_isolates_a_small_group(everything_read):
    """Each scope's rows minus another's, hour by hour (a project's row minus its groups' rows,
    a machine type's minus its groups'), by day through usage_between, over a lifetime with
    v_project_total - v_group_total, and in the shifting savings: the audit restricted to
    each family of rows the review subtracted finds every hidden group as unbounded as the
    margin asks."""
    truth, rows, line = everything_read
    hourly = [r for r in rows if r[2] is not None and len(r[2]) == 1]
    families = {
        "hours, across scopes": hourly,
        "days (usage_between and the daily rollup)": [
            r for r in rows if r[2] is not None and 1 < len(r[2]) <= 48
        ],
        "lifetimes": [r for r in rows if r[2] is None],
        "months (the shifting savings)": [r for r in rows if "shifting_saving_gco2eq" in r[3]],
    }
    for family, chosen in families.items():
        assert chosen, family
        bounds = audit(truth, chosen, line, "busy_kwh")
        assert _exposed(bounds, MARGIN) == [], family
    # The review's case: a project (IDAaaS) of one small group (IDAaaS_SANS, one person)
    # beside large ones: no hour shows the project beside all of its other groups.
    shown = defaultdict(set)
    for scope, name, hours, _ in hourly:
        shown[hours[0]].add((scope, name))
    for names in shown.values():
        if ("project", "IDAaaS") in names:
            assert ("group", "IDAaaS (other groups)") in names


def test_2_a_person_in_several_groups_counts_once(world, reporter):
    """`insomniac`, alone on the platform from 02:00 to 05:00 in five groups: no row shows
    those hours at all (before: the group scope's merged row said users = 5, with numbers),
    and no row anywhere counts more people than held its groups."""
    _, present, _ = world
    hourly = read(reporter, "SELECT * FROM reporting.v_usage_hourly")
    night = hourly["timestamp_utc"].dt.hour.isin([2, 3, 4])
    assert not night.any(), hourly[night]
    truth = cells(world[0])
    line = coverage(truth, hourly)
    for r in hourly.itertuples():
        groups = [g for g, _ in line(r.scope, r.scope_name, [r.timestamp_utc])]
        held = set().union(*(present[(r.timestamp_utc.to_pydatetime(), g)] for g in groups))
        assert r.users == len(held), (r.scope, r.scope_name, r.timestamp_utc)


def test_3_presence_shows_only_at_k_people(world, reporter):
    """No row shows a count of people below k, every row shows its numbers (a hidden row has no
    row at all), and a group whose one person comes and goes never appears: before, its row
    (users = 0) disappeared exactly in the hours its user worked."""
    _, present, _ = world
    hourly = read(reporter, "SELECT * FROM reporting.v_usage_hourly")
    assert (hourly["users"] >= K).all()
    assert hourly[["busy_kwh", "idle_kwh", "busy_gco2eq", "idle_gco2eq"]].notna().all().all()
    lonely = [
        g for g in GROUPS if max(len(p) for (_, group), p in present.items() if group == g) == 1
    ]
    assert "IDAaaS_SANS" in lonely and "EDAaaS_SANS" in lonely
    periods = read(reporter, "SELECT scope_name FROM reporting.v_usage_rollup")
    for group in lonely:
        assert group not in set(hourly["scope_name"]) | set(periods["scope_name"]), group
    assert "SANS" not in set(hourly["scope_name"])  # a machine type of two people


READ_BY_REPORTER = [
    ("reporting.v_usage_hourly", "scope_name, busy_kwh"),
    ("reporting.usage_rollup", "scope_name, busy_kwh"),
    ("reporting.v_usage_daily", "scope_name, busy_kwh"),
    ("reporting.v_group_total", "group_name, busy_kwh"),
    ("reporting.v_project_total", "cloud_project_name, busy_kwh"),
    ("reporting.v_shifting_savings", "scope_name, busy_kwh"),
    ("reporting.usage_between('group', '2025-03-10', '2025-03-13')", "scope_name, busy_kwh"),
]


def test_4_a_leaky_function_sees_only_the_rows_returned(reporter):
    """A reporter's own plpgsql function in WHERE, as cheap as can be, that prints what it is
    given: it is given only the rows the relation returns (each reporting view is a security
    barrier over rows already released), for every relation the review tried."""
    with psycopg.connect(reporter, autocommit=True) as conn:
        seen: list[str] = []
        conn.add_notice_handler(lambda d: seen.append(d.message_primary))
        conn.execute(
            "CREATE FUNCTION pg_temp.peek(text, float8) RETURNS boolean LANGUAGE plpgsql "
            "COST 0.0000001 AS $$ BEGIN RAISE NOTICE '%|%', $1, $2; RETURN TRUE; END $$"
        )
        for relation, columns in READ_BY_REPORTER:
            name, value = columns.split(", ")
            seen.clear()
            returned = conn.execute(
                f"SELECT {columns} FROM {relation} WHERE pg_temp.peek({name}, {value})"
            ).fetchall()
            assert returned, relation
            assert set(seen) <= {f"{n}|{v}" for n, v in returned}, relation
            assert len(seen) == len(returned), relation


def test_4_an_error_answers_nothing_about_hidden_rows(world, reporter):
    """ln(busy_kwh - x) and 1 / (busy_kwh - x) fail only where a row the reporter is given
    reaches x: for x the energy of each of the first 40 hidden group-hours, the query fails
    exactly when a released row of that hour is at most x (before: the hidden row itself made
    it fail, answering 'is the hidden value below x?')."""
    truth = cells(world[0])
    hourly = read(reporter, "SELECT timestamp_utc, busy_kwh FROM reporting.v_usage_hourly")
    hidden = truth[(truth["users"] >= 1) & (truth["users"] < K)].head(40)
    assert len(hidden) == 40
    with psycopg.connect(reporter, autocommit=True) as conn:
        for r in hidden.itertuples():
            x = float(r.busy_kwh)
            here = hourly.loc[hourly["timestamp_utc"] == r.timestamp_utc, "busy_kwh"]
            for oracle, fails in (
                ("ln(busy_kwh - %s)", (here <= x).any()),
                ("1 / (busy_kwh - %s)", (here == x).any()),
            ):
                query = (
                    "SELECT count(*) FROM reporting.v_usage_hourly "
                    f"WHERE timestamp_utc = %s AND {oracle} IS NOT NULL"
                )
                try:
                    conn.execute(query, (r.timestamp_utc, x))
                    failed = False
                except (psycopg.errors.InvalidArgumentForLogarithm, psycopg.errors.DivisionByZero):
                    failed = True
                assert failed == fails, (oracle, r.group_name, r.timestamp_utc)


def test_every_relation_the_reporter_reads_is_a_security_barrier(world):
    url, *_ = world
    views = read(
        url,
        "SELECT c.relname, coalesce(c.reloptions, '{}') AS options, c.relkind "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'reporting' AND c.relkind IN ('r', 'p', 'v', 'm', 'f')",
    )
    assert (views["relkind"] == "v").all()
    assert all("security_barrier=true" in options for options in views["options"]), views
    assert len(views) > 20


def test_5_no_lock_a_reader_can_hold_stalls_a_run(world):
    """Logins of both reading roles take every advisory lock key the pipeline ever used (the
    first login to try a key gets it) and lock every relation they may read, and hold them, while a day is run again (its
    intensity, forecast error, facts, release and rollups): the run finishes as usual,
    within a lock timeout of 5 s."""
    url, _, resources = world
    holders = []
    made = []
    with psycopg.connect(url, autocommit=True) as admin:
        for role in ("carbon_reporter", "carbon_analyst"):
            name = f"login_{role.split('_')[1]}_{uuid.uuid4().hex[:8]}"
            admin.execute(f'CREATE ROLE "{name}" LOGIN IN ROLE {role}')
            made.append(name)
    try:
        for name in made:
            conn = psycopg.connect(re.sub(r"://[^@/]*@", f"://{name}@", url, count=1))
            holders.append(conn)
            days = range(
                (START.date() - pd.Timestamp("2000-01-01").date()).days - 40,
                (END.date() - pd.Timestamp("2000-01-01").date()).days + 40,
            )
            for day in days:
                conn.execute("SELECT pg_try_advisory_lock(13001, %s)", (day,))
                conn.execute("SELECT pg_try_advisory_lock(13002, %s)", (day,))
                conn.execute("SELECT pg_try_advisory_lock(13003, %s)", (day,))
            for key in ("13004, 0", "13005", "hashtext('carbon_ensure_month_partitions')"):
                conn.execute(f"SELECT pg_try_advisory_lock({key})")
            readable = conn.execute(
                "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname IN ('public', 'reporting') AND c.relkind IN ('r', 'p', 'v') "
                "AND has_table_privilege(c.oid, 'SELECT')"
            ).fetchall()
            assert readable
            for (relation,) in readable:
                conn.execute(f"LOCK TABLE {relation} IN ACCESS SHARE MODE")
        patient = {
            **resources,
            "warehouse": WarehouseResource(database_url=url, lock_timeout_seconds=5),
        }
        day = (START + timedelta(days=1), START + timedelta(days=2))
        result = materialize_range(patient, *day, raise_on_error=False)
        assert result.success, [
            e.event_specific_data.error.to_string()
            for e in result.all_events
            if e.event_type_value == "STEP_FAILURE"
        ]
    finally:
        for conn in holders:
            conn.close()
        with psycopg.connect(url, autocommit=True) as admin:
            for name in made:
                admin.execute(f'DROP OWNED BY "{name}"')
                admin.execute(f'DROP ROLE "{name}"')
