"""Security against a real PostgreSQL: logins of the reading roles trying to get more than they
were given, privileges that fail closed, the reporter's small-group rule, bounded time for
every outside call, and passwords with any character."""

from __future__ import annotations

import re
import socket
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dagster as dg
import pandas as pd
import psycopg
import pytest

from carbon_pipeline.definitions import ASSETS
from carbon_pipeline.partitions import range_tags
from carbon_pipeline.resources import (
    CarbonIntensityResource,
    PrometheusResource,
    RegistryResource,
    WarehouseResource,
)
from carbon_pipeline.resources.carbon_intensity import CarbonIntensityError
from carbon_pipeline.resources.prometheus import PrometheusError
from carbon_pipeline.resources.registry import RegistryError
from carbon_pipeline_tests.conftest import local_resources, materialize_range
from carbon_pipeline_tests.fleet_spec import WINDOW_END, WINDOW_START

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def warehouse_url(create_database, prometheus, intensity_server, registry_seed) -> str:
    """A warehouse loaded with the test fleet's two days, once for this module."""
    url = create_database()
    resources = local_resources(url, prometheus, intensity_server, registry_seed, chunk_hours=744)
    assert materialize_range(resources, WINDOW_START, WINDOW_END).success
    return url


@pytest.fixture(scope="module")
def logins(warehouse_url):
    """{role: URL of a fresh LOGIN that is a member of that role only}; dropped afterwards."""
    made = {}
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        for role in ("carbon_reporter", "carbon_analyst"):
            name = f"login_{role.split('_')[1]}_{uuid.uuid4().hex[:8]}"
            conn.execute(f'CREATE ROLE "{name}" LOGIN IN ROLE {role}')
            made[role] = (name, re.sub(r"://[^@/]*@", f"://{name}@", warehouse_url, count=1))
    yield {role: url for role, (_, url) in made.items()}
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        for name, _ in made.values():
            conn.execute(f'DROP OWNED BY "{name}"')
            conn.execute(f'DROP ROLE "{name}"')


# ---- 1. no role gets more than it was given ----------------------------------------------


def _functions(conn: psycopg.Connection) -> list[tuple[str, str, bool, list | None]]:
    return conn.execute(
        """
        SELECT n.nspname || '.' || p.proname, pg_get_function_identity_arguments(p.oid),
               p.prosecdef, p.proconfig
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname IN ('public', 'reporting')
        ORDER BY 1
        """
    ).fetchall()


def test_no_function_runs_with_its_owners_rights_and_each_pins_pg_temp_last(warehouse_url):
    with psycopg.connect(warehouse_url) as conn:
        functions = _functions(conn)
    assert [f for f, _, definer, _ in functions if definer] == []
    unpinned = set()
    for name, _, _, config in functions:
        path = next((c for c in config or [] if c.startswith("search_path=")), None)
        if path is None:
            unpinned.add(name)
        else:
            assert path.replace(" ", "").endswith(",pg_temp"), (name, path)
    # A SQL function with a SET clause is never inlined (partition pruning needs it); it runs
    # with its caller's rights and names every object schema-qualified.
    assert unpinned == {"public.usage_between"}


ESCALATE = """
CREATE FUNCTION pg_temp.escalate() RETURNS text LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE format('GRANT carbon_analyst TO %I', session_user);
  EXECUTE format('GRANT carbon_reporter TO %I', session_user);
  RETURN 'x';
END $$
"""
# Every relation a function of reporting or public reads, shadowed by a temp view whose
# every column calls the escalation (the review's attack, generalised).
SHADOWED = {
    "intensity_forecast": "SELECT 0 AS region_id, now() AS issued_at, now() AS period_from, "
    "1.0::float8 AS forecast_gco2eq_per_kwh, pg_temp.escalate() AS intensity_index",
    "forecast_site": "SELECT pg_temp.escalate() AS site, 12 AS region_id",
    "equivalency": "SELECT 'x'::text AS equivalency, pg_temp.escalate() AS description, "
    "'u'::text AS unit, 1.0::float8 AS gco2eq_per_unit",
    "v_usage_hourly": "SELECT pg_temp.escalate() AS scope",
    "reporting_policy": "SELECT 1 AS min_users, pg_temp.escalate() AS x",
    "fact_usage_ada": "SELECT pg_temp.escalate() AS x",
}
CALLS = {
    "carbon_reporter": [
        "SELECT * FROM reporting.equivalencies(1)",
        "SELECT * FROM reporting.usage_between('project', '2025-03-03', '2025-03-05')",
        "SELECT reporting.reporting_now()",
        "SELECT * FROM reporting.v_usage_total",
    ],
    "carbon_analyst": [
        "SELECT * FROM equivalencies(1)",
        "SELECT * FROM usage_between('user', '2025-03-03', '2025-03-05')",
        "SELECT reporting_now()",
        "SELECT * FROM v_usage_total",
        "SELECT * FROM greenest_window('2 hours', 'RAL')",
        "SELECT * FROM greenest_window('2 hours')",
    ],
}


@pytest.mark.parametrize("role", ["carbon_reporter", "carbon_analyst"])
def test_a_login_shadowing_what_functions_read_gains_nothing(warehouse_url, logins, role):
    url = logins[role]
    login = url.split("://")[1].split("@")[0]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(ESCALATE)
        for name, body in SHADOWED.items():
            conn.execute(f"CREATE TEMP VIEW {name} AS {body}")
        for call in CALLS[role]:
            try:
                conn.execute(call).fetchall()
            except psycopg.Error:
                pass  # refused: as good as harmless
    with psycopg.connect(warehouse_url) as conn:
        granted = conn.execute(
            "SELECT r.rolname FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid "
            "JOIN pg_roles u ON u.oid = m.member WHERE u.rolname = %s",
            (login,),
        ).fetchall()
    assert granted == [(role,)]


# ---- 2. privileges fail closed -----------------------------------------------------------


def documented_readers() -> dict[str, set[str]]:
    """{role: relations} from docs/security.md's table 'What each role reads'."""
    text = (REPO / "docs" / "security.md").read_text()
    section = text.split("## What each role reads", 1)[1].split("\n## ", 1)[0]
    readers: dict[str, set[str]] = {"carbon_analyst": set(), "carbon_reporter": set()}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not cells[0].startswith("`"):
            continue
        relation = cells[0].strip("`")
        for role, cell in zip(("carbon_analyst", "carbon_reporter"), cells[1:], strict=True):
            if cell == "reads":
                readers[role].add(relation)
    return readers


READABLE = """
SELECT n.nspname || '.' || c.relname
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
  AND n.nspname NOT LIKE 'pg_temp%%' AND n.nspname NOT LIKE 'pg_toast_temp%%'
  AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
  AND has_table_privilege(%s, c.oid, 'SELECT')
ORDER BY 1
"""


def test_each_role_reads_exactly_what_the_documentation_says(warehouse_url):
    documented = documented_readers()
    with psycopg.connect(warehouse_url) as conn:
        for role, relations in documented.items():
            readable = {r for (r,) in conn.execute(READABLE, (role,)).fetchall()}
            assert readable == relations, role


def test_a_table_or_view_added_later_is_readable_by_nobody_until_granted(create_database):
    url = create_database()
    with psycopg.connect(url) as conn:
        conn.execute("CREATE TABLE added_later (x int)")
        conn.execute("CREATE VIEW v_added_later AS SELECT count(*) AS n FROM fact_usage_ada")
        conn.execute("CREATE VIEW reporting.v_added_later AS SELECT 1 AS n")
        conn.execute(
            "SELECT carbon_ensure_month_partitions('fact_usage_ada', '2031-01-01', '2031-02-01')"
        )
        for role in ("carbon_analyst", "carbon_reporter"):
            readable = {r for (r,) in conn.execute(READABLE, (role,)).fetchall()}
            assert (
                not {
                    "public.added_later",
                    "public.v_added_later",
                    "reporting.v_added_later",
                    "public.fact_usage_ada_y2031m01",
                }
                & readable
            )
        # A new partition is read through its parent, by whoever reads the parent.
        conn.execute("SET ROLE carbon_analyst")
        conn.execute("SELECT count(*) FROM fact_usage_ada WHERE timestamp_utc >= '2031-01-01'")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT * FROM fact_usage_ada_y2031m01")


@pytest.fixture
def migrator(admin_url, create_database):
    """A database owned by the superuser and a login that may create in it and in its schema
    public but owns neither: (admin URL of the database, the login's URL of it)."""
    url = create_database(empty=True)
    name = f"migrator_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{name}" LOGIN')
        conn.execute(f'GRANT CREATE ON DATABASE "{url.rsplit("/", 1)[1]}" TO "{name}"')
        conn.execute(f'GRANT CREATE ON SCHEMA public TO "{name}"')
    yield url, re.sub(r"://[^@/]*@", f"://{name}@", url, count=1)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'DROP OWNED BY "{name}" CASCADE')
        conn.execute(f'DROP ROLE "{name}"')


def test_migrations_by_a_role_that_does_not_own_public_run_or_stop_clearly(migrator):
    admin, url = migrator
    # PostgreSQL <= 14's default: every role may create in public, and only its owner can
    # take that back.
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("GRANT CREATE ON SCHEMA public TO PUBLIC")
    with pytest.raises(Exception, match="does not own the schema") as raised:
        WarehouseResource(database_url=url).migrate()
    assert "REVOKE CREATE ON SCHEMA public FROM PUBLIC" in str(raised.value)
    # Once the owner has done so, the same role migrates to the end.
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
    WarehouseResource(database_url=url).migrate()
    with psycopg.connect(admin) as conn:
        readable = {r for (r,) in conn.execute(READABLE, ("carbon_reporter",)).fetchall()}
    assert readable == documented_readers()["carbon_reporter"]


# ---- 3. small groups (the rule itself, its audit and the attacks: test_disclosure.py) -------


def as_role(url: str, role: str, query: str) -> pd.DataFrame:
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        cur.execute(f"SET ROLE {role}")
        cur.execute("SET TIME ZONE 'UTC'")
        cur.execute(query)
        return pd.DataFrame(cur.fetchall(), columns=[d.name for d in cur.description])


@pytest.mark.parametrize("k", [1, 2, 3])
def test_the_reporter_sees_no_hour_of_fewer_users_than_the_policy(warehouse_url, k):
    """On the test fleet (a one-member group in every hour, IDAaaS_SANS: carol; at most four
    people at once), under three policies: every row has k people, each scope's rows of an
    hour add up to the platform's, and the periods are the sums of the hours shown."""
    with psycopg.connect(warehouse_url) as conn:
        conn.execute("UPDATE reporting_policy SET min_users = %s", (k,))
    try:
        full = as_role(
            warehouse_url,
            "carbon_analyst",
            "SELECT scope, scope_name, timestamp_utc, users, busy_kwh FROM v_usage_hourly "
            "WHERE scope <> 'user'",
        )
        assert ((full["scope"] == "group") & (full["users"] == 1)).any()
        got = as_role(
            warehouse_url,
            "carbon_reporter",
            "SELECT scope, scope_name, timestamp_utc, users, busy_kwh, all_columns "
            "FROM reporting.v_usage_hourly",
        )
        if k == 1:  # nobody is protected: every aggregate row, as the analysts see it
            assert len(got) == len(full) and got["all_columns"].all()
        else:
            assert len(got) > 0 and (got["users"] >= k).all()
            small = full[(full["scope"] == "group") & (full["users"] < k)]
            pairs = set(zip(got["scope_name"], got["timestamp_utc"], strict=True))
            assert not set(zip(small["scope_name"], small["timestamp_utc"], strict=True)) & pairs
        ada = got[got["scope"] == "ada"].set_index("timestamp_utc")["busy_kwh"]
        for scope in ("project", "machine", "group"):
            summed = got[got["scope"] == scope].groupby("timestamp_utc")["busy_kwh"].sum()
            assert summed.sort_index().index.equals(ada.sort_index().index), scope
            assert summed.sort_index().to_numpy() == pytest.approx(
                ada.sort_index().to_numpy(), rel=1e-9
            )
        by_name = got[got["scope"] == "group"].groupby("scope_name")["busy_kwh"].sum()
        for query in (
            "SELECT scope_name, busy_kwh FROM reporting.usage_between("
            "'group', '2025-03-03', '2025-03-05')",
            "SELECT group_name AS scope_name, busy_kwh FROM reporting.v_group_total",
        ):
            period = as_role(warehouse_url, "carbon_reporter", query)
            period = period.set_index("scope_name")["busy_kwh"].sort_index()
            assert list(period.index) == list(by_name.sort_index().index), query
            assert period.to_numpy(dtype=float) == pytest.approx(
                by_name.sort_index().to_numpy(dtype=float), rel=1e-9
            )
    finally:
        with psycopg.connect(warehouse_url) as conn:
            conn.execute("UPDATE reporting_policy SET min_users = 5")


# ---- 4. every outside call has a deadline ------------------------------------------------


class _Hold(BaseHTTPRequestHandler):
    """Answers as the server's `mode` says: never, a byte a second, or 503 for a day."""

    def do_GET(self):
        self._answer()

    def do_POST(self):
        self._answer()

    def _answer(self):
        mode = self.server.mode
        if mode == "never":
            self.server.release.wait(300)
            return
        if mode == "trickle":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "100000")
            self.end_headers()
            while not self.server.release.is_set():
                try:
                    self.wfile.write(b" ")
                    self.wfile.flush()
                except OSError:
                    return
                time.sleep(1)
            return
        self.send_response(503)
        self.send_header("Retry-After", "86400")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture(params=["never", "trickle", "503 retry after a day"])
def bad_server(request):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hold)
    server.mode = request.param.split()[0]
    server.release = threading.Event()
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", request.param
    server.release.set()
    server.shutdown()
    server.server_close()


def _failure(result) -> str:
    events = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert events, "the run did not fail"
    return "\n".join(e.event_specific_data.error.to_string() for e in events)


def test_prometheus_that_never_finishes_answering_fails_the_run_within_its_time(
    resources, bad_server
):
    url, mode = bad_server
    resources = {
        **resources,
        "prometheus": PrometheusResource(prometheus_url=url, timeout_seconds=3, retries=2),
    }
    began = time.monotonic()
    result = dg.materialize(
        [a for a in ASSETS if a.node_def.name == "host_cpu_seconds"],
        resources=resources,
        tags=range_tags(WINDOW_START, WINDOW_START.replace(hour=2)),
        raise_on_error=False,
    )
    took = time.monotonic() - began
    assert not result.success
    message = _failure(result)
    assert "Prometheus at http://127.0.0.1" in message, message
    # Two attempts of the asset (its retry policy) of at most 3 s each, plus the run's own
    # start-up; without a deadline the first would wait 300 s (or a day).
    assert took < 60, (mode, took)


def test_the_api_that_never_finishes_answering_costs_at_most_its_time(bad_server):
    url, mode = bad_server
    api = CarbonIntensityResource(api_url=url, timeout_seconds=3, retries=2)
    began = time.monotonic()
    periods, errors = api.fetch_periods(WINDOW_START, WINDOW_START.replace(hour=2))
    took = time.monotonic() - began
    assert periods.empty and len(errors) == 1
    assert isinstance(errors[0], CarbonIntensityError)
    assert "Carbon Intensity API" in str(errors[0]) or url in str(errors[0]), str(errors[0])
    assert took < 3 + 10, (mode, took)  # without a deadline: 300 s, or a day


def test_a_run_spends_at_most_its_time_on_a_source():
    api = CarbonIntensityResource(api_url="http://127.0.0.1:9", timeout_seconds=5, retries=0)
    api._budget.start(0.0)  # as setup_for_execution does, with nothing left
    _, errors = api.fetch_periods(WINDOW_START, WINDOW_END)
    assert errors and "this run's time for it (0 s) is spent" in str(errors[0])
    prometheus = PrometheusResource(prometheus_url="http://127.0.0.1:9", retries=0)
    prometheus._budget.start(0.0)
    with pytest.raises(PrometheusError, match="this run's time for it"):
        prometheus.query_range("up", WINDOW_START, WINDOW_END)


@pytest.fixture
def silent_tcp():
    """A TCP server that accepts connections and never says a word (a hung MongoDB)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    held, stop = [], threading.Event()

    def accept():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    listener.close()


def test_a_registry_that_never_answers_costs_at_most_its_time(silent_tcp):
    registry = RegistryResource(
        mongo_uri=f"mongodb://reader:s3cret@127.0.0.1:{silent_tcp}/?directConnection=true",
        timeout_seconds=2,
    )
    began = time.monotonic()
    with pytest.raises(RegistryError) as raised:
        registry.workspaces_overlapping(WINDOW_START, WINDOW_END)
    assert time.monotonic() - began < 2 + 10  # without a deadline: as long as it stays silent
    assert "the registry (MongoDB at mongodb://reader:***@127.0.0.1" in str(raised.value)
    assert "s3cret" not in str(raised.value)


def test_a_lock_held_elsewhere_fails_the_window_within_the_lock_timeout(resources, database_url):
    holder = psycopg.connect(database_url)
    holder.execute("LOCK TABLE carbon_intensity_hourly IN ACCESS EXCLUSIVE MODE")
    try:
        patient = {
            **resources,
            "warehouse": WarehouseResource(database_url=database_url, lock_timeout_seconds=2),
        }
        began = time.monotonic()
        result = dg.materialize(
            [a for a in ASSETS if a.node_def.name == "carbon_intensity"],
            resources=patient,
            tags=range_tags(WINDOW_START, WINDOW_START.replace(hour=2)),
            raise_on_error=False,
        )
        took = time.monotonic() - began
    finally:
        holder.close()
    assert not result.success
    assert "the warehouse (PostgreSQL at" in _failure(result)
    assert (
        "waited 2 s for a lock another session holds (DATABASE_LOCK_TIMEOUT_SECONDS)"
        in _failure(result)
    )
    assert took < 60  # without a lock timeout: as long as the other session holds it


def test_the_pipelines_sessions_carry_their_time_limits(database_url):
    warehouse = WarehouseResource(
        database_url=database_url,
        statement_timeout_seconds=7,
        lock_timeout_seconds=3,
        idle_in_transaction_timeout_seconds=11,
    )
    with warehouse.connect() as conn:
        got = [
            conn.execute(f"SHOW {name}").fetchone()[0]
            for name in ("statement_timeout", "lock_timeout", "idle_in_transaction_session_timeout")
        ]
    assert got == ["7s", "3s", "11s"]


# ---- 5. passwords with any character -----------------------------------------------------


@pytest.fixture(scope="module")
def password_server(tmp_path_factory):
    """A private PostgreSQL that checks passwords (SCRAM), with a role whose password holds
    every character URLs trip on; yields (host:port, user, password)."""
    from carbon_pipeline_tests.private_postgres import PrivatePostgres

    server = PrivatePostgres(tmp_path_factory.mktemp("scram")).start()
    password = "p/a@s:s%w#o?r d"
    server.execute(f"CREATE ROLE pipeline LOGIN CREATEDB PASSWORD '{password}'")
    for role in ("carbon_analyst", "carbon_reporter"):  # as a DBA makes them (README, Access)
        server.execute(f"CREATE ROLE {role} NOLOGIN")
    server.execute("CREATE ROLE carbon_api NOLOGIN IN ROLE carbon_analyst, carbon_reporter")
    yield server.address, "pipeline", password
    server.stop()


RAW_FORMS = {
    "raw": lambda p: p.replace("?", "%3F"),  # only `?` must be escaped
    "percent-encoded": lambda p: __import__("urllib.parse").parse.quote(p, safe=""),
}


@pytest.mark.parametrize("form", list(RAW_FORMS))
def test_a_password_with_any_character_reaches_both_databases_and_no_message(
    password_server, form, monkeypatch, tmp_path
):
    from carbon_pipeline import instance

    address, user, password = password_server
    written = RAW_FORMS[form](password)
    url = f"postgresql://{user}:{written}@{address}/warehouse_{form.replace('-', '_')}"
    with psycopg.connect(
        f"postgresql://{user}:{RAW_FORMS['percent-encoded'](password)}@{address}/postgres",
        autocommit=True,
    ) as conn:
        conn.execute(f"CREATE DATABASE warehouse_{form.replace('-', '_')}")
    warehouse = WarehouseResource(database_url=url)
    assert "0009_security" in warehouse.migrate()
    # The Dagster instance beside it: created and reachable with the same credentials.
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.delenv("DAGSTER_POSTGRES_URL", raising=False)
    instance.prepare(tmp_path / "home")
    dagster_url = instance.os.environ["DAGSTER_POSTGRES_URL"]
    import sqlalchemy as sa

    with sa.create_engine(dagster_url).connect() as conn:
        assert conn.exec_driver_sql("SELECT current_user").scalar() == user
    # A wrong database and a wrong password: errors that name the problem, not the password.
    for bad in (url.rsplit("/", 1)[0] + "/nope", url.replace(written[:3], "zz" + written[:3])):
        with pytest.raises(Exception) as raised:
            WarehouseResource(database_url=bad).migrate()
        text = str(raised.value) + repr(raised.value)
        for piece in (password, written, *password.split("@"), *password.split("/")):
            if len(piece) >= 3:
                assert piece not in text, (piece, text)


@pytest.mark.parametrize("character", ["/", "@", ":", "%", "#"])
def test_urls_parse_and_mask_with_each_character_in_the_password(character, monkeypatch):
    from carbon_pipeline.database_url import DatabaseUrl
    from carbon_pipeline.instance import dagster_postgres_url, instance_database_url
    from carbon_pipeline.resources.warehouse import sqlalchemy_url
    from carbon_pipeline.secrets import mask_secrets

    password = f"ab{character}cd{character}ef"
    url = f"postgresql://carbon:{password}@db.example:5432/warehouse?sslmode=require"
    parsed = DatabaseUrl.parse(url if character != "%" else url.replace("%", "%25"))
    assert (parsed.user, parsed.password, parsed.host, parsed.database, parsed.query) == (
        "carbon",
        password,
        "db.example:5432",
        "warehouse",
        "sslmode=require",
    )
    for rendered in (
        sqlalchemy_url(url),
        instance_database_url(url),
        dagster_postgres_url(url),
    ):
        again = DatabaseUrl.parse(rendered)
        assert again.host == "db.example:5432" and again.query == "sslmode=require"
    assert DatabaseUrl.parse(instance_database_url(url)).database == "warehouse_dagster"
    # As documented, a % is written %25 (else %cd would be read as an escape).
    written = url.replace("%", "%25")
    monkeypatch.setenv("DATABASE_URL", written)
    for text in (f"could not connect to {written}", f"error: {password} rejected"):
        masked = mask_secrets(text)
        assert "cd" not in masked.replace("db.example", ""), masked
    monkeypatch.delenv("DATABASE_URL")
    assert "cd" not in mask_secrets(url).replace("db.example", "")


# ---- 6. group names: checked and inserted atomically -------------------------------------


def test_two_runs_bringing_colliding_group_names_at_once_give_one_pair_one_name(database_url):
    from carbon_pipeline.assets.usage import group_ids
    from carbon_pipeline.attribution import GroupNameError

    first = pd.DataFrame(
        [("A_B_C", "A_B", "C")], columns=["group_name", "cloud_project_name", "machine_name"]
    )
    second = pd.DataFrame([("A_B_C", "A", "B_C")], columns=first.columns)
    holder = psycopg.connect(database_url)
    ids = group_ids(holder, first)  # inserted, not yet committed
    outcome = {}

    def other_run():
        try:
            with psycopg.connect(database_url) as conn:
                outcome["ids"] = group_ids(conn, second)
        except GroupNameError as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=other_run)
    thread.start()
    with psycopg.connect(database_url, autocommit=True) as watcher:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            waiting = watcher.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock'"
            ).fetchone()[0]
            if waiting:
                break
            time.sleep(0.05)
        assert waiting, "the second run never waited for the first"
    holder.commit()
    holder.close()
    thread.join(30)
    assert "ids" not in outcome
    assert "project 'A' with machine 'B_C' and project 'A_B' with machine 'C'" in str(
        outcome["error"]
    )
    with psycopg.connect(database_url) as conn:
        stored = conn.execute(
            "SELECT group_id, cloud_project_name, machine_name FROM dim_group WHERE group_name = 'A_B_C'"
        ).fetchall()
    assert stored == [(ids["A_B_C"], "A_B", "C")]
