"""The seed's API served from the warehouse (issue 36), over real HTTP against the test fleet's
warehouse in a real PostgreSQL: every route's numbers equal the warehouse's, the charts' shapes,
who sees what for each kind of token (an OpenID Connect issuer served on loopback), the
anonymous answers equal carbon_reporter's, faults answer 4xx/503 without a trace, and a
property-based run of the whole OpenAPI schema (schemathesis) finds no 5xx and no answer
outside its schema."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import psycopg
import pytest
import requests
import schemathesis
import uvicorn
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import HealthCheck, settings

from carbon_pipeline.api.app import create_app
from carbon_pipeline.api.models import Tracked
from carbon_pipeline.api.settings import ApiSettings
from carbon_pipeline.resources import PowerModelResource
from carbon_pipeline_tests.conftest import local_resources, materialize_range
from carbon_pipeline_tests.fleet_spec import WINDOW_END, WINDOW_START, t
from carbon_pipeline_tests.test_forecast import fetch

NOW = "2025-03-04T23:30Z"  # the API's "now": in the fleet's last hour
AUDIENCE = "ada-carbon"
ANALYSTS = "carbon-analyst"
PERIOD = {"start": "2025-03-03T00:00Z", "end": "2025-03-05T00:00Z"}


@pytest.fixture(scope="module")
def warehouse(create_database, prometheus, intensity_server, registry_seed):
    """The test fleet's two days, a forecast vintage issued just before NOW, a policy of 2
    people (the fleet has at most four at once: some rows shown, some not), and a login of
    carbon_api: (owner's URL, the API's URL)."""
    url = create_database()
    resources = local_resources(url, prometheus, intensity_server, registry_seed, chunk_hours=744)
    assert materialize_range(resources, WINDOW_START, WINDOW_END).success
    assert fetch(url, intensity_server, t("2025-03-04T23:00")).success
    login = f"api_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE reporting_policy SET min_users = 2")
        conn.execute(f'CREATE ROLE "{login}" LOGIN IN ROLE carbon_api')
    yield url, re.sub(r"://[^@/]*@", f"://{login}@", url, count=1)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'DROP ROLE "{login}"')


class Issuer:
    """An OpenID Connect issuer on loopback: its discovery document and keys, and tokens."""

    def __init__(self):
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                body = {
                    "/.well-known/openid-configuration": {
                        "issuer": issuer.url,
                        "jwks_uri": issuer.url + "/jwks",
                    },
                    "/jwks": {"keys": [{**public, "kid": "k1", "use": "sig", "alg": "RS256"}]},
                }.get(self.path)
                data = json.dumps(body).encode()
                self.send_response(200 if body else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def token(self, username: str, analyst: bool = False, key=None, **claims) -> str:
        now = datetime.now(UTC)
        body = {
            "iss": self.url,
            "aud": AUDIENCE,
            "sub": f"sub-{username}",
            "preferred_username": username,
            "iat": now,
            "exp": now + timedelta(minutes=10),
            "groups": [ANALYSTS] if analyst else ["users"],
            **claims,
        }
        return jwt.encode(body, key or self.key, algorithm="RS256", headers={"kid": "k1"})

    def headers(self, username: str, **kwargs) -> dict:
        return {"Authorization": f"Bearer {self.token(username, **kwargs)}"}


@pytest.fixture(scope="module")
def issuer():
    made = Issuer()
    yield made
    made.httpd.shutdown()


def serve(app) -> tuple[str, uvicorn.Server, threading.Thread]:
    """The app under uvicorn on a free loopback port, in a thread; waits until it answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "the API did not start"
        time.sleep(0.05)
    return url, server, thread


@pytest.fixture(scope="module")
def launched():
    return []


@pytest.fixture(scope="module")
def api(warehouse, issuer, launched):
    _, login_url = warehouse

    def launch(hour: datetime) -> Tracked:
        launched.append(hour)
        return Tracked(run_id="run-1", partition=f"{hour:%Y-%m-%d-%H:%M}", status="submitted")

    settings = ApiSettings(
        database_url=login_url,
        cors_allowed_origins=("https://ada.stfc.ac.uk",),
        oidc_issuer=issuer.url,
        oidc_audience=AUDIENCE,
        analyst_value=ANALYSTS,
        reporting_now=NOW,
    )
    url, server, thread = serve(create_app(settings, PowerModelResource(), launch))
    yield url
    server.should_exit = True
    thread.join(10)


def get(api: str, path: str, headers=None, **params) -> requests.Response:
    return requests.get(api + path, params=params, headers=headers, timeout=30)


def sql(url: str, query: str, params=None, role: str | None = None) -> list[dict]:
    with psycopg.connect(url) as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        if role:
            cur.execute(f"SET ROLE {role}")
        cur.execute("SELECT set_config('carbon.now', %s, false)", (NOW,))
        cur.execute(query, params)
        return cur.fetchall()


def close(got: float | None, want: float | None) -> bool:
    if want is None:
        return got is None
    return got == pytest.approx(want, rel=1e-12, abs=1e-15)


# ---- every route's numbers are the warehouse's ------------------------------------------------


def test_group_usage_and_summary_are_the_warehouses(api, warehouse, issuer):
    url, _ = warehouse
    for headers, role, schema in (
        (None, "carbon_reporter", "reporting"),
        (issuer.headers("dana", analyst=True), "carbon_analyst", "public"),
    ):
        groups = get(api, "/groups", headers).json()
        want = sql(url, f"SELECT group_name FROM {schema}.v_groups ORDER BY 1", role=role)
        assert [g["name"] for g in groups] == [r["group_name"] for r in want] != []
        for group in groups:
            got = get(api, f"/groups/{group['name']}/usage", headers, **PERIOD)
            assert got.status_code == 200, got.text
            got = got.json()
            (row,) = sql(
                url,
                f"SELECT * FROM {schema}.usage_between('group', %s, %s) WHERE scope_name = %s",
                (PERIOD["start"], PERIOD["end"], group["name"]),
                role=role,
            )
            for ours, theirs in (
                ("busy_cpu_seconds_total", "busy_cpu_seconds_total"),
                ("busy_usage_kwh", "busy_kwh"),
                ("idle_usage_kwh", "idle_kwh"),
                ("total_usage_kwh", "total_kwh"),
                ("busy_usage_gco2eq", "busy_gco2eq"),
                ("total_usage_gco2eq", "total_gco2eq"),
            ):
                assert close(got[ours], row[theirs]), (group, ours)
            assert got["footprint"]["full_gco2eq"] == pytest.approx(row["full_gco2eq"])
            assert got["period"]["hours_in_period"] == 48
            assert got["period"]["hours_shown"] == row["hours"]
            assert got["status"] == ("complete" if row["hours"] == 48 else "processed")
            assert got["carbon_equivalencies"]["car_miles"] == pytest.approx(
                row["total_gco2eq"] / 400
            )
            summary = get(api, f"/groups/{group['name']}/summary", headers).json()
            (life,) = sql(
                url,
                f"SELECT * FROM {schema}.v_usage_total WHERE scope = 'group' AND scope_name = %s",
                (group["name"],),
                role=role,
            )
            assert close(summary["lifetime"]["total_usage_gco2eq"], life["total_gco2eq"])
            assert summary["lifetime"]["period"]["hours_shown"] == life["hours"]
            # The month of NOW so far: to the start of NOW's hour (23:00, still open).
            (month,) = sql(
                url,
                f"SELECT * FROM {schema}.usage_between('group', '2025-03-01', '2025-03-04T23:00Z') "
                "WHERE scope_name = %s",
                (group["name"],),
                role=role,
            )
            this_month = summary["this_month"]
            assert this_month["period"]["start"] == "2025-03-01T00:00:00Z"
            assert this_month["period"]["end"] == "2025-03-04T23:00:00Z"
            assert close(this_month["total_usage_gco2eq"], month["total_gco2eq"])


def test_a_persons_usage_and_summary_are_the_warehouses(api, warehouse, issuer):
    url, _ = warehouse
    got = get(api, "/users/alice/usage", issuer.headers("alice"), **PERIOD)
    assert got.status_code == 200, got.text
    entries = {w["workspace_id"]: w for w in got.json()["workspaces"]}
    want = sql(
        url,
        "SELECT s.workspace_ext_id, s.hostname, count(*) AS hours, sum(f.busy_kwh) AS busy, "
        "sum(f.idle_kwh) AS idle, sum(f.busy_gco2eq + f.idle_gco2eq) AS gco2eq, "
        "sum(f.busy_cpu_seconds_total) AS cpu "
        "FROM fact_usage_workspace f JOIN workspace_session s USING (workspace_session_id) "
        "JOIN dim_user u ON u.user_id = s.user_id WHERE u.ext_user_id = 'alice' "
        "GROUP BY 1, 2",
    )
    assert set(entries) == {r["workspace_ext_id"] for r in want} and len(want) == 2
    for r in want:
        entry = entries[r["workspace_ext_id"]]
        assert entry["owner"] == "alice" and entry["hostname"] == r["hostname"]
        assert close(entry["busy_usage_kwh"], r["busy"]) and close(
            entry["idle_usage_kwh"], r["idle"]
        )
        assert close(entry["total_usage_gco2eq"], r["gco2eq"])
        assert close(entry["busy_cpu_seconds_total"], r["cpu"])
        assert entry["period"]["hours_shown"] == r["hours"]
        assert entry["timestamp"] == "2025-03-03T00:00:00Z"
    summary = get(api, "/users/alice/summary", issuer.headers("alice")).json()
    (life,) = sql(url, "SELECT * FROM v_usage_total WHERE scope = 'user' AND scope_name = 'alice'")
    assert close(summary["lifetime"]["total_usage_gco2eq"], life["total_gco2eq"])
    assert close(summary["lifetime"]["busy_cpu_seconds_total"], life["busy_cpu_seconds_total"])


def test_the_charts_have_their_shapes_and_the_warehouses_numbers(api, warehouse, issuer):
    url, _ = warehouse
    day = get(api, "/carbon/history", view="day", date="2025-03-03").json()
    assert len(day["points"]) == 24 and day["scope"] == "ada"
    hours = sql(
        url,
        "SELECT timestamp_utc, busy_kwh + idle_kwh AS kwh, busy_gco2eq + idle_gco2eq AS g "
        "FROM reporting.v_usage_hourly WHERE scope = 'ada' AND timestamp_utc < '2025-03-04' "
        "ORDER BY 1",
        role="carbon_reporter",
    )
    shown = {r["timestamp_utc"]: r for r in hours}
    for point in day["points"]:
        r = shown.get(datetime.fromisoformat(point["start"]))
        assert point["hours_shown"] == (1 if r else 0)
        assert close(point["total_usage_kwh"], r and r["kwh"])
        assert close(point["total_usage_gco2eq"], r and r["g"])
    month = get(api, "/carbon/history", view="month", date="2025-03-17").json()
    assert len(month["points"]) == 31
    assert [p["hours_shown"] > 0 for p in month["points"]] == [d in (2, 3) for d in range(31)]
    assert month["points"][5]["total_usage_kwh"] is None  # no data: unknown, not 0
    year = get(api, "/carbon/history", view="year", date="2025-06-01").json()
    assert [p["start"][:7] for p in year["points"]] == [f"2025-{m:02d}" for m in range(1, 13)]
    (march,) = sql(
        url,
        "SELECT total_gco2eq, hours FROM reporting.v_usage_monthly WHERE scope = 'ada'",
        role="carbon_reporter",
    )
    assert close(year["points"][2]["total_usage_gco2eq"], march["total_gco2eq"])
    assert year["points"][2]["hours_shown"] == march["hours"]
    heat = get(api, "/carbon/heatmap", year=2025).json()
    assert len(heat["days"]) == 365 and heat["days"][0]["day"] == "2025-01-01"
    daily = sql(
        url,
        "SELECT day, total_gco2eq, hours FROM reporting.v_usage_daily WHERE scope = 'ada'",
        role="carbon_reporter",
    )
    for r in daily:
        (d,) = [d for d in heat["days"] if d["day"] == r["day"].isoformat()]
        assert close(d["total_usage_gco2eq"], r["total_gco2eq"]) and d["hours_shown"] == r["hours"]
    # A person's chart: their own, or an analyst's.
    mine = get(
        api,
        "/carbon/history",
        issuer.headers("carol"),
        scope="user",
        name="carol",
        view="day",
        date="2025-03-03",
    )
    assert mine.status_code == 200 and sum(p["hours_shown"] for p in mine.json()["points"]) == 24
    assert get(api, "/carbon/history", scope="user", name="carol").status_code == 401
    assert (
        get(api, "/carbon/history", issuer.headers("bob"), scope="user", name="carol").status_code
        == 403
    )


def test_intensity_forecast_calculations_and_equivalencies(api, warehouse):
    url, _ = warehouse
    now = get(api, "/carbon/intensity/current").json()
    (want,) = sql(
        url,
        "SELECT * FROM reporting.v_intensity_now WHERE site IS NULL OR true ORDER BY site LIMIT 1",
    )
    assert now["intensity"] == want["national_gco2eq_per_kwh"]
    assert now["period_from"] == "2025-03-04T23:30:00Z"
    assert now["issued_at"] == "2025-03-04T23:00:00Z" and now["age_seconds"] > 0
    assert now["last_actual_hour"] == "2025-03-04T23:00:00Z"
    ahead = get(api, "/carbon/intensity/forecast", hours=24).json()
    latest = sql(
        url,
        "SELECT period_from, forecast_gco2eq_per_kwh FROM reporting.v_forecast_latest "
        "WHERE site IS NULL AND period_from < %s::timestamptz + interval '24 hours' ORDER BY 1",
        (NOW,),
    )
    assert [p["intensity"] for p in ahead["forecasts"]] == [
        r["forecast_gco2eq_per_kwh"] for r in latest
    ]
    assert len(ahead["forecasts"]) == 48  # the half-hour now, then 47 more
    # 3600 busy and 7200 idle CPU-seconds of a Muon host at 10:00 on the 3rd: 12 W and 1 W a core.
    body = {
        "busy_cpu_seconds": 3600,
        "idle_cpu_seconds": 7200,
        "machine_name": "Muon",
        "timestamp": "2025-03-03T10:20:00Z",
    }
    got = requests.post(api + "/carbon/calculate", json=body, timeout=30).json()
    ((intensity,),) = [
        tuple(r.values())
        for r in sql(
            url,
            "SELECT intensity_gco2eq_per_kwh FROM carbon_intensity_hourly "
            "WHERE timestamp_utc = '2025-03-03T10:00Z'",
        )
    ]
    assert got["busy_usage_kwh"] == pytest.approx(0.012) and got["idle_usage_kwh"] == pytest.approx(
        0.002
    )
    assert got["total_usage_gco2eq"] == pytest.approx(0.014 * intensity, rel=1e-12)
    assert got["intensity_hour"] == "2025-03-03T10:00:00Z"
    estimate = get(api, "/carbon/electricity/estimate", busy_cpu_seconds=3600).json()
    assert estimate["total_usage_kwh"] == pytest.approx(0.012)
    assert estimate["intensity_hour"] == "2025-03-04T23:00:00Z"  # the latest stored
    for answer in (
        get(api, "/carbon/equivalencies/1000").json(),
        requests.post(api + "/carbon/equivalencies", json={"gco2eq": 1000}, timeout=30).json(),
    ):
        assert answer["carbon_equivalencies"] == pytest.approx(
            {
                "car_miles": 2.5,
                "smartphone_charges": 1000 / 8.22,
                "tree_days": 1000 / 59.6,
                "hd_streaming_hours": 1000 / 55,
                "litres_boiled": 1000 / 70,
            }
        )


def test_workspaces_and_tracking(api, warehouse, issuer, launched):
    url, _ = warehouse
    mine = get(api, "/workspaces/active", issuer.headers("alice")).json()
    assert [w["owner"] for w in mine] == ["alice"] and mine[0]["active"]
    every = get(api, "/workspaces/active", issuer.headers("dana", analyst=True)).json()
    want = sql(url, "SELECT * FROM v_active_workspaces ORDER BY started_at, workspace_ext_id")
    assert [w["workspace_id"] for w in every] == [r["workspace_ext_id"] for r in want]
    assert [w["owner"] for w in every] == [r["ext_user_id"] for r in want]
    assert {"alice", "bob"} <= {w["owner"] for w in every}
    assert get(api, "/workspaces/active").status_code == 401
    bobs = [w for w in every if w["owner"] == "bob"][0]["workspace_id"]
    assert get(api, f"/workspaces/{bobs}", issuer.headers("bob"), **PERIOD).status_code == 200
    assert get(api, f"/workspaces/{bobs}", issuer.headers("alice"), **PERIOD).status_code == 404
    assert get(api, f"/workspaces/{bobs}", **PERIOD).status_code == 401
    summary = get(api, "/workspaces/summary").json()
    (last,) = sql(
        url,
        "SELECT timestamp_utc, users, busy_kwh + idle_kwh AS kwh FROM reporting.v_usage_hourly "
        "WHERE scope = 'ada' ORDER BY 1 DESC LIMIT 1",
        role="carbon_reporter",
    )
    assert summary["last_hour"] == last["timestamp_utc"].strftime("%Y-%m-%dT%H:%M:%SZ")
    assert summary["users"] == last["users"] and summary["active_workspaces"] is None
    assert close(summary["usage"]["total_usage_kwh"], last["kwh"])
    assert get(api, "/workspaces/summary", issuer.headers("dana", analyst=True)).json()[
        "active_workspaces"
    ] == len(want)
    # Tracking asks Dagster for the latest closed hour: analysts only.
    assert requests.post(api + "/workspaces/track", timeout=30).status_code == 401
    assert (
        requests.post(
            api + "/workspaces/track", headers=issuer.headers("alice"), timeout=30
        ).status_code
        == 403
    )
    tracked = requests.post(
        api + "/workspaces/track", headers=issuer.headers("dana", analyst=True), timeout=30
    )
    assert tracked.status_code == 202 and tracked.json()["run_id"] == "run-1"
    assert launched and launched[-1] == datetime.now(UTC).replace(
        minute=0, second=0, microsecond=0
    ) - timedelta(hours=1)


# ---- who sees what ----------------------------------------------------------------------------


def test_each_token_sees_what_it_may(api, issuer):
    person = "/users/alice/usage"
    expired = issuer.token("alice", exp=datetime.now(UTC) - timedelta(minutes=5))
    cases = {
        "none": (None, 401, "bearer token"),
        "not a bearer": ({"Authorization": "Basic YWxpY2U6eA=="}, 401, "Bearer"),
        "garbage": ({"Authorization": "Bearer not-a-jwt"}, 401, "cannot be checked"),
        "expired": ({"Authorization": f"Bearer {expired}"}, 401, "expired"),
        "another audience": (issuer.headers("alice", aud="someone-else"), 401, "audience"),
        "another issuer": (issuer.headers("alice", iss="https://evil.example"), 401, "issuer"),
        "another key": (issuer.headers("alice", key=issuer.other_key), 401, "not valid"),
        "another user's": (issuer.headers("bob"), 403, "bob"),
        "its own": (issuer.headers("alice"), 200, ""),
        "an analyst": (issuer.headers("dana", analyst=True), 200, ""),
    }
    for case, (headers, status, says) in cases.items():
        got = get(api, person, headers, **PERIOD)
        assert got.status_code == status, (case, got.text)
        assert says in got.text, (case, got.text)
        if status == 401:
            assert got.headers["WWW-Authenticate"] == "Bearer"
    unsigned = jwt.encode(
        {
            "iss": issuer.url,
            "aud": AUDIENCE,
            "preferred_username": "alice",
            "exp": datetime.now(UTC) + timedelta(minutes=5),
        },
        None,
        algorithm="none",
    )
    assert get(api, person, {"Authorization": f"Bearer {unsigned}"}).status_code == 401


def test_callers_without_rights_get_what_carbon_reporter_gets(api, warehouse, issuer):
    url, _ = warehouse
    # IDAaaS_SANS has one person (carol) in every hour: under a policy of 2 never shown alone.
    assert get(api, "/groups/IDAaaS_SANS/usage", **PERIOD).status_code == 404
    assert get(api, "/groups/IDAaaS_SANS/summary").status_code == 404
    assert get(api, "/carbon/history", scope="group", name="IDAaaS_SANS").status_code == 404
    # A signed-in person who is not an analyst sees groups as anyone does.
    assert (
        get(api, "/groups/IDAaaS_SANS/usage", issuer.headers("carol"), **PERIOD).status_code == 404
    )
    analyst = get(api, "/groups/IDAaaS_SANS/usage", issuer.headers("dana", analyst=True), **PERIOD)
    assert analyst.status_code == 200 and analyst.json()["period"]["hours_shown"] == 48
    # Every anonymous chart of every aggregate scope is the reporter's rows, hour by hour.
    for scope, name in (
        ("ada", None),
        ("project", "IDAaaS"),
        ("machine", "Muon"),
        ("group", "IDAaaS_Muon"),
    ):
        got = get(api, "/carbon/history", scope=scope, name=name, view="day", date="2025-03-03")
        rows = sql(
            url,
            "SELECT timestamp_utc, busy_kwh FROM reporting.v_usage_hourly WHERE scope = %s "
            "AND scope_name = %s AND timestamp_utc < '2025-03-04'",
            (scope, name or "ada"),
            role="carbon_reporter",
        )
        if not rows:
            assert (
                got.status_code == 404 or sum(p["hours_shown"] for p in got.json()["points"]) == 0
            )
            continue
        shown = {r["timestamp_utc"]: r["busy_kwh"] for r in rows}
        for point in got.json()["points"]:
            assert close(point["busy_usage_kwh"], shown.get(datetime.fromisoformat(point["start"])))


# ---- bad input and faults ---------------------------------------------------------------------


def test_bad_input_is_refused_naming_the_field(api, issuer):
    analyst = issuer.headers("dana", analyst=True)
    assert get(api, "/users/nobody/usage", analyst).status_code == 404
    assert "nobody" in get(api, "/users/nobody/summary", analyst).json()["detail"]
    assert get(api, "/groups/NoSuch_Group/usage").status_code == 404
    assert get(api, "/workspaces/no-such-workspace", analyst).status_code == 404
    for params, field in (
        ({"start": "2025-03-04T00:00Z", "end": "2025-03-03T00:00Z"}, "end"),
        ({"start": "yesterday"}, "start"),
        ({"start": "2020-01-01T00:00Z", "end": "2025-01-01T00:00Z"}, "start"),
    ):
        got = get(api, "/groups/IDAaaS_Muon/usage", **params)
        assert got.status_code == 422, params
        assert got.json()["detail"][0]["loc"] == ["query", field], got.text
    assert get(api, "/carbon/history", view="week").status_code == 422
    assert get(api, "/carbon/history", scope="project").status_code == 422  # no name
    assert get(api, "/carbon/equivalencies/-5").status_code == 422
    bad = requests.post(api + "/carbon/calculate", json={"busy_cpu_seconds": -1}, timeout=30)
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "busy_cpu_seconds"]
    late = requests.post(
        api + "/carbon/calculate",
        timeout=30,
        json={"busy_cpu_seconds": 1, "timestamp": "2030-01-01T00:00Z"},
    )
    assert late.status_code == 404 and "2030-01-01T00:00Z" in late.json()["detail"]


def test_a_database_down_or_slow_answers_503_with_retry_after(warehouse):
    url, login_url = warehouse
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    secret = "s3cr3t-Pa55"
    down = re.sub(r"://([^@/]*)@[^/]*/", f"://\\1:{secret}@127.0.0.1:{closed}/", login_url)
    api, server, thread = serve(
        create_app(ApiSettings(database_url=down, statement_timeout_seconds=1))
    )
    try:
        for path in ("/health", "/groups", "/carbon/intensity/current"):
            got = get(api, path)
            assert got.status_code == 503 and got.headers["Retry-After"] == "5", got.text
            assert secret not in got.text and "Traceback" not in got.text
    finally:
        server.should_exit = True
        thread.join(10)
    api, server, thread = serve(
        create_app(ApiSettings(database_url=login_url, statement_timeout_seconds=1))
    )
    holder = psycopg.connect(url)
    try:
        holder.execute("LOCK TABLE reporting_release IN ACCESS EXCLUSIVE MODE")
        began = time.monotonic()
        got = get(api, "/carbon/history")
        assert got.status_code == 503 and "within 1 s" in got.text, got.text
        assert time.monotonic() - began < 10
    finally:
        holder.close()
        server.should_exit = True
        thread.join(10)


def test_anonymous_answers_are_kept_awhile_and_personal_ones_never(api, issuer):
    first = get(api, "/carbon/history", view="month", date="2025-03-01")
    again = get(api, "/carbon/history", view="month", date="2025-03-01")
    assert "age" not in first.headers and int(again.headers["age"]) >= 0
    assert again.json() == first.json()
    for _ in range(2):
        mine = get(api, "/users/alice/summary", issuer.headers("alice"))
        assert mine.status_code == 200 and "age" not in mine.headers
    # A token that fails is refused even where an anonymous answer is kept.
    bad = get(
        api, "/carbon/history", {"Authorization": "Bearer x"}, view="month", date="2025-03-01"
    )
    assert bad.status_code == 401


def test_cors_allows_the_configured_origins_only(api):
    asked = {"Origin": "https://ada.stfc.ac.uk", "Access-Control-Request-Method": "GET"}
    ok = requests.options(api + "/groups", headers=asked, timeout=30)
    assert ok.headers.get("access-control-allow-origin") == "https://ada.stfc.ac.uk"
    other = requests.options(
        api + "/groups", headers={**asked, "Origin": "https://evil.example"}, timeout=30
    )
    assert "access-control-allow-origin" not in other.headers


# ---- the whole schema, property-based ---------------------------------------------------------


@pytest.fixture(scope="module")
def api_schema(api):
    return schemathesis.openapi.from_url(api + "/openapi.json")


every_operation = schemathesis.pytest.from_fixture("api_schema")


@every_operation.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_request_the_schema_allows_gets_a_5xx_or_an_answer_outside_it(case):
    """Every check but one: a request the schema allows may still be refused with 422 where
    OpenAPI cannot say a parameter is needed with another (a chart of a project names it)."""
    case.call_and_validate(excluded_checks=[schemathesis.checks.positive_data_acceptance])
