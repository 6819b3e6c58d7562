"""The PostgreSQL warehouse: migrations, whole-window replacement by COPY, dimension keys."""

from __future__ import annotations

import functools
import hashlib
import io
import logging
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import psycopg
import sqlalchemy as sa
from psycopg.types.json import Jsonb
from pydantic import Field

from carbon_pipeline.database_url import DatabaseUrl, DatabaseUrlError
from carbon_pipeline.partitions import PIPELINE_START
from carbon_pipeline.resources import binary_copy
from carbon_pipeline.secrets import mask_secrets, mask_url
from carbon_pipeline.tables import TableSpec
from carbon_pipeline.times import utc_ns
from carbon_pipeline.timing import phase

log = logging.getLogger(__name__)


def _refresh_forecast_error(conn: psycopg.Connection, start: datetime, end: datetime) -> int:
    return conn.execute(
        "SELECT public.carbon_refresh_forecast_error(%s, %s)", (start, end)
    ).fetchone()[0]


@dataclass(frozen=True)
class ForecastFetch:
    """One fetch of a region's forecast (region 0: national): its periods, or its error."""

    region_id: int
    issued_at: datetime
    fetched_at: datetime
    periods: pd.DataFrame | None
    error: str | None = None


_PACKAGED_SQL = Path(__file__).resolve().parent.parent / "sql"
SQL_DIR = _PACKAGED_SQL if _PACKAGED_SQL.is_dir() else Path(__file__).resolve().parents[2] / "sql"
MIGRATIONS_DIR = SQL_DIR / "migrations"

# Fact and staging tables partitioned by month on timestamp_utc.
PARTITIONED_TABLES = (
    "host_cpu_hourly",
    "fact_usage_instance",
    "fact_usage_ada",
    "fact_usage_project",
    "fact_usage_machine",
    "fact_usage_group",
    "fact_usage_user",
    "fact_usage_workspace",
)


# Columns the windows' queries return that are text whatever they hold ("1" is a name).
TEXT_COLUMNS = (
    "hostname",
    "cloud_project_name",
    "machine_name",
    "intensity_source",
    "reason",
    "workspace_id",
    "ext_user_id",
)


class WarehouseError(RuntimeError):
    """A warehouse operation was refused; nothing was changed."""


def sqlalchemy_url(database_url: str) -> str:
    """Accept postgres://, postgresql:// or postgresql+psycopg:// and use psycopg 3; the
    password may hold any character (see database_url)."""
    try:
        url = DatabaseUrl.parse(database_url)
    except DatabaseUrlError as exc:
        raise WarehouseError(f"DATABASE_URL: {exc}") from None
    return url.with_(scheme="postgresql+psycopg").render()


_ENGINES: dict[tuple[str, str], sa.Engine] = {}


def session_options(
    statement_seconds: float, lock_seconds: float, idle_in_transaction_seconds: float
) -> str:
    """libpq `options` for the pipeline's sessions: UTC, and bounded time (0: no bound)."""
    return (
        "-c timezone=UTC"
        f" -c statement_timeout={int(statement_seconds * 1000)}"
        f" -c lock_timeout={int(lock_seconds * 1000)}"
        f" -c idle_in_transaction_session_timeout={int(idle_in_transaction_seconds * 1000)}"
    )


DEFAULT_SESSION_OPTIONS = session_options(1800, 600, 900)


def _engine(database_url: str, options: str = DEFAULT_SESSION_OPTIONS) -> sa.Engine:
    """One connection pool per database (and session settings) for the process."""
    engine = _ENGINES.get((database_url, options))
    if engine is None:
        engine = _ENGINES[(database_url, options)] = sa.create_engine(
            sqlalchemy_url(database_url),
            pool_pre_ping=True,
            connect_args={"options": options},
        )
    return engine


def dispose_engines() -> None:
    """Close every pooled connection of this process (a process that is done with its
    databases, or tests that make hundreds of them)."""
    for engine in _ENGINES.values():
        engine.dispose()
    _ENGINES.clear()


@functools.cache
def _migrate_once(database_url: str) -> None:
    applied = apply_migrations(_engine(database_url))
    if applied:
        log.info("applied warehouse migrations %s to %s", applied, mask_url(database_url))


def _create_migrations_table(engine: sa.Engine) -> None:
    """schema_migrations, created once; two processes creating it at once both go on."""
    create = (
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version TEXT PRIMARY KEY, checksum TEXT NOT NULL,"
        " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
    )
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(create)
    except sa.exc.IntegrityError:  # the other one won the race: the table exists now
        pass


def describe_connection_error(exc: BaseException) -> str | None:
    """One line for an error reaching PostgreSQL (credentials masked), or None if it is not
    one."""
    if isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError | sa.exc.ArgumentError):
        exc = exc.orig or exc
    if isinstance(exc, psycopg.OperationalError | sa.exc.ArgumentError):
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"cannot use the database: {mask_secrets(first)} (check DATABASE_URL)"
    return None


def _limit_hit(exc: BaseException, warehouse: WarehouseResource) -> str | None:
    """Which of the session's time limits an error is, in words, or None."""
    error = getattr(exc, "orig", None) or exc
    if isinstance(error, psycopg.errors.LockNotAvailable):
        return (
            f"it waited {warehouse.lock_timeout_seconds:g} s for a lock another session holds "
            "(DATABASE_LOCK_TIMEOUT_SECONDS)"
        )
    if isinstance(error, psycopg.errors.QueryCanceled):
        return (
            f"it ran longer than {warehouse.statement_timeout_seconds:g} s "
            "(DATABASE_STATEMENT_TIMEOUT_SECONDS)"
        )
    if isinstance(error, psycopg.errors.IdleInTransactionSessionTimeout) or (
        "idle-in-transaction timeout" in str(error)
    ):
        return (
            f"its transaction was idle longer than "
            f"{warehouse.idle_in_transaction_timeout_seconds:g} s "
            "(DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_SECONDS)"
        )
    return None


def write_locks(tables: Sequence[str], start: datetime, end: datetime) -> list[str]:
    """The write_lock rows a window of `tables` over [start, end) holds: one per table set and
    hour, in name (= time) order. Windows wait for each other only where their hours overlap."""
    table_set = ",".join(tables)
    hours = pd.date_range(start, end, freq="h", inclusive="left", tz="UTC")
    return [f"write:{table_set}:{hour:%Y-%m-%dT%H}" for hour in hours]


def migrations() -> list[tuple[str, str]]:
    """(version, sql) of every migration file, in order."""
    files = sorted(MIGRATIONS_DIR.glob("*.sql"))
    if not files:
        raise WarehouseError(f"no migrations found in {MIGRATIONS_DIR}")
    return [(f.stem, f.read_text()) for f in files]


def apply_migrations(engine: sa.Engine) -> list[str]:
    """Apply the migrations not yet applied, each in its own transaction. Idempotent.

    A migration already applied whose file has since changed is an error: the database
    would silently differ from the code.
    """
    applied_now = []
    _create_migrations_table(engine)
    for version, sql in migrations():
        checksum = hashlib.sha256(sql.encode()).hexdigest()
        with engine.begin() as conn:
            # Runs starting at once on a fresh database (pods of one backfill) take turns:
            # a lock only the pipeline's role can take (see 0007 on advisory locks).
            conn.exec_driver_sql("LOCK TABLE schema_migrations IN SHARE ROW EXCLUSIVE MODE")
            row = conn.exec_driver_sql(
                "SELECT checksum FROM schema_migrations WHERE version = %s", (version,)
            ).first()
            if row is not None:
                if row[0] != checksum:
                    raise WarehouseError(
                        f"migration {version} was applied with different contents; "
                        "write a new migration instead of editing an applied one"
                    )
                continue
            driver = conn.connection.driver_connection
            driver.execute(sql)
            conn.exec_driver_sql(
                "INSERT INTO schema_migrations (version, checksum) VALUES (%s, %s)",
                (version, checksum),
            )
            applied_now.append(version)
    return applied_now


# ---- binary COPY ---------------------------------------------------------------------


class WindowWriter:
    """Writes rows into tables whose [start, end) window was emptied in this transaction.

    The COPYs run in a thread of their own while the caller goes on (PostgreSQL ingests on a
    core of its own): copy() returns once the rows are encoded. They run one at a time, in
    the order asked, and at most one is in flight (what is held is one payload); a COPY's
    error is raised by the next copy() or by finish()."""

    def __init__(self, conn: psycopg.Connection, specs: dict[str, TableSpec]):
        self._conn = conn
        self._specs = specs
        self.rows = dict.fromkeys(specs, 0)  # rows written per table
        self._sender = ThreadPoolExecutor(1, thread_name_prefix="copy-behind")
        self._sending: Future | None = None

    def copy(self, table: str, frame: pd.DataFrame) -> int:
        spec = self._specs[table]
        if frame.empty:
            return 0
        with phase("transform"):
            payload = binary_copy.encode(frame, spec.columns)
        self.finish()
        self._sending = self._sender.submit(self._send, spec, payload)
        self.rows[table] += len(frame)
        return len(frame)

    def finish(self) -> None:
        """Wait for the COPY in flight; raises its error."""
        sending, self._sending = self._sending, None
        if sending is not None:
            with phase("postgres_write"):
                sending.result()

    def close(self) -> None:
        """Wait for the COPY in flight, whatever its outcome, and stop the thread."""
        self._sender.shutdown(wait=True)

    def _send(self, spec: TableSpec, payload: bytes) -> None:
        cols = ", ".join(spec.column_names)
        with self._conn.cursor() as cur:
            with cur.copy(f"COPY {spec.name} ({cols}) FROM STDIN (FORMAT BINARY)") as copy:
                copy.write(payload)


class WarehouseResource(dg.ConfigurableResource):
    """The PostgreSQL warehouse the pipeline writes and analysts read."""

    database_url: str
    statement_timeout_seconds: float = Field(
        default=1800.0, description="Longest one SQL statement may run [s]; 0: no limit."
    )
    lock_timeout_seconds: float = Field(
        default=600.0, description="Longest a statement may wait for a lock [s]; 0: no limit."
    )
    idle_in_transaction_timeout_seconds: float = Field(
        default=900.0,
        description="Longest a transaction may stay open without a statement [s] (a window's "
        "transaction stays open while the sources are asked: keep it above their timeouts).",
    )
    reporter_min_users: int | None = Field(
        default=None,
        description="carbon_reporter's minimum of distinct users an aggregate hour must have "
        "to be shown on its own; None keeps the warehouse's (reporting_policy).",
    )

    @property
    def engine(self) -> sa.Engine:
        return _engine(
            self.database_url,
            session_options(
                self.statement_timeout_seconds,
                self.lock_timeout_seconds,
                self.idle_in_transaction_timeout_seconds,
            ),
        )

    def migrate(self) -> list[str]:
        applied = apply_migrations(self.engine)
        self.apply_policy()
        return applied

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        # Every run brings the schema up to date itself: a fresh database needs no manual step.
        _migrate_once(self.database_url)
        self.apply_policy()
        self.record_calendar_start(PIPELINE_START)

    def record_calendar_start(self, start: datetime) -> None:
        """Where the pipeline's calendar starts (CARBON_PIPELINE_START): the coverage views
        account for every hour from it."""
        with self.connect() as conn:
            conn.execute(
                "INSERT INTO pipeline_calendar (start_utc) VALUES (%(start)s) "
                "ON CONFLICT (singleton) DO UPDATE SET start_utc = EXCLUDED.start_utc "
                "WHERE pipeline_calendar.start_utc <> EXCLUDED.start_utc",
                {"start": start},
            )

    def record_failure(
        self, run_id: str, asset: str, start: datetime, end: datetime, error: str
    ) -> None:
        """A run failed on the window [start, end): shown as `failed` (with the run) in the
        coverage views for the hours that hold no data."""
        with self.connect() as conn:
            conn.execute(
                "INSERT INTO window_failures (run_id, asset, start_utc, end_utc, error) "
                "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (run_id, asset, start_utc) "
                "DO UPDATE SET failed_at = now(), error = EXCLUDED.error, end_utc = EXCLUDED.end_utc",
                (run_id, asset, start, end, mask_secrets(error)[:2000]),
            )

    def record_derivation(self, column: str, versions: pd.Series) -> None:
        """What the hours (versions' index) were derived from (hour_derivation.<column>), after
        their window committed: at worst an hour is re-derived once more than needed."""
        if column not in ("power_model_version", "registry_version"):
            raise ValueError(f"hour_derivation has no column {column}")
        with phase("postgres_write"), self.connect() as conn:
            conn.execute(
                f"INSERT INTO hour_derivation (timestamp_utc, {column}) "
                "SELECT * FROM unnest(%(hours)s::timestamptz[], %(versions)s::text[]) "
                f"ON CONFLICT (timestamp_utc) DO UPDATE SET {column} = EXCLUDED.{column} "
                f"WHERE hour_derivation.{column} IS DISTINCT FROM EXCLUDED.{column}",
                {
                    "hours": [t.to_pydatetime() for t in versions.index],
                    "versions": versions.tolist(),
                },
            )

    def store_forecast(
        self, fetches: Sequence[ForecastFetch], sites: dict[str, int]
    ) -> dict[str, int]:
        """Stores each fetch's periods as a vintage, never overwriting one already stored
        (a second fetch for the same half-hour keeps the first), logs every fetch (failed ones
        with their error), and records the configured sites: one transaction. Returns
        {table: rows written}."""
        written = {"intensity_forecast": 0, "forecast_fetch": 0, "forecast_site": 0}
        with phase("postgres_write"), self.connect() as conn:
            for fetch in fetches:
                stored = 0
                if fetch.periods is not None and len(fetch.periods):
                    periods = fetch.periods
                    stored = conn.execute(
                        "INSERT INTO intensity_forecast (region_id, issued_at, period_from, "
                        "forecast_gco2eq_per_kwh, intensity_index) "
                        "SELECT %(region)s, %(issued)s, * FROM unnest(%(periods)s::timestamptz[], "
                        "%(values)s::float8[], %(bands)s::text[]) ON CONFLICT DO NOTHING",
                        {
                            "region": fetch.region_id,
                            "issued": fetch.issued_at,
                            "periods": [t.to_pydatetime() for t in periods["period_from"]],
                            "values": periods["forecast"].astype(float).tolist(),
                            "bands": [None if pd.isna(b) else str(b) for b in periods["index"]],
                        },
                    ).rowcount
                written["intensity_forecast"] += stored
                conn.execute(
                    "INSERT INTO forecast_fetch (region_id, issued_at, fetched_at, periods, "
                    "stored, error) VALUES (%s, %s, %s, %s, %s, %s)",
                    (
                        fetch.region_id,
                        fetch.issued_at,
                        fetch.fetched_at,
                        0 if fetch.periods is None else len(fetch.periods),
                        stored,
                        None if fetch.error is None else mask_secrets(fetch.error)[:2000],
                    ),
                )
                written["forecast_fetch"] += 1
            conn.execute("DELETE FROM forecast_site")
            for site, region_id in sorted(sites.items()):
                conn.execute(
                    "INSERT INTO forecast_site (site, region_id) VALUES (%s, %s)",
                    (site, region_id),
                )
            written["forecast_site"] = len(sites)
            # A new vintage changes the final forecast of the periods it covers.
            issued = {fetch.issued_at for fetch in fetches}
            written["forecast_error_daily"] = sum(
                _refresh_forecast_error(conn, t, t + timedelta(hours=48)) for t in issued
            )
        return written

    def refresh_forecast_error(self, start: datetime, end: datetime) -> int:
        """forecast_error_daily for the days touching [start, end), after their intensity
        changed; returns the rows written."""
        with phase("postgres_write"), self.connect() as conn:
            return _refresh_forecast_error(conn, start, end)

    def apply_policy(self) -> None:
        """Set the reporting role's disclosure policy (CARBON_REPORTER_MIN_USERS) if given."""
        if self.reporter_min_users is None:
            return
        with self.connect() as conn:
            conn.execute(
                "UPDATE reporting_policy SET min_users = %s WHERE min_users <> %s",
                (self.reporter_min_users, self.reporter_min_users),
            )

    @contextmanager
    def connect(self) -> Iterator[psycopg.Connection]:
        """A raw psycopg connection from the pool, in a transaction committed on success."""
        with self._bounded(), self.engine.begin() as conn:
            yield conn.connection.driver_connection

    @contextmanager
    def _bounded(self) -> Iterator[None]:
        """Turn the session's time limits running out into one line naming the warehouse and
        the setting."""
        try:
            yield
        except (
            psycopg.errors.LockNotAvailable,
            psycopg.errors.QueryCanceled,
            psycopg.errors.IdleInTransactionSessionTimeout,
            sa.exc.OperationalError,
        ) as exc:
            limit = _limit_hit(exc, self)
            if limit is None:
                raise
            raise WarehouseError(
                f"the warehouse (PostgreSQL at {mask_url(self.database_url)}) stopped a "
                f"statement: {limit}"
            ) from exc

    def ensure_partitions(
        self, start: datetime, end: datetime, tables: Iterable[str], lock_names: Sequence[str] = ()
    ) -> None:
        """Create the monthly partitions [start, end) needs, and the next month's ahead of
        time (so the hour that opens a month finds it ready), and the write locks' rows. Own
        short transaction; it waits on another window only to create the same lock rows or
        a missing partition (carbon_ensure_month_partitions locks only when one is missing)."""
        ahead = end + timedelta(days=31)
        with self.connect() as conn:
            if lock_names:
                conn.execute(
                    "INSERT INTO write_lock (name) SELECT unnest(%s::text[]) ON CONFLICT DO NOTHING",
                    (sorted(lock_names),),
                )
            for table in tables:
                if table in PARTITIONED_TABLES:
                    conn.execute(
                        "SELECT carbon_ensure_month_partitions(%s, %s, %s)", (table, start, ahead)
                    )

    @contextmanager
    def replace_window(
        self,
        start: datetime,
        end: datetime,
        specs: Sequence[TableSpec],
    ) -> Iterator[WindowWriter]:
        """One transaction that deletes [start, end) from every table and lets the caller
        COPY the new rows in. Readers see the old rows until it commits; on any error the
        old rows stay. Two runs writing the same tables wait for each other only where their
        hours overlap (a lock per table set and hour); the last to commit wins, nothing is
        doubled."""
        names = [s.name for s in specs]
        lock_names = write_locks(names, start, end)
        with phase("postgres_write"):
            self.ensure_partitions(start, end, names, lock_names)
        with self._bounded(), self.engine.connect() as sa_conn:
            transaction = sa_conn.begin()
            conn = sa_conn.connection.driver_connection
            try:
                with phase("postgres_write"):
                    # Rows of write_lock, in name order (no deadlock), until commit: a lock no
                    # reading role can take (advisory lock keys anyone can compute).
                    conn.execute(
                        "SELECT name FROM write_lock WHERE name = ANY(%s) ORDER BY name FOR UPDATE",
                        (lock_names,),
                    )
                    for name in names:
                        conn.execute(
                            f"DELETE FROM {name} WHERE timestamp_utc >= %s AND timestamp_utc < %s",
                            (start, end),
                        )
                writer = WindowWriter(conn, {s.name: s for s in specs})
                try:
                    yield writer
                    writer.finish()
                finally:
                    writer.close()
            except BaseException:
                transaction.rollback()
                raise
            with phase("postgres_write"):
                transaction.commit()

    def read_window(self, query: str, start: datetime, end: datetime) -> pd.DataFrame:
        """Rows of sql/queries/<query>.sql for [start, end); its `timestamp_epoch` becomes
        `timestamp_utc`, and the name and flag columns stay text."""
        frame = self.read_frame(
            load_query(query), {"start": start, "end": end}, dtype=dict.fromkeys(TEXT_COLUMNS, str)
        )
        frame.insert(
            0,
            "timestamp_utc",
            utc_ns(pd.to_datetime(frame.pop("timestamp_epoch"), unit="s", utc=True)),
        )
        return frame

    def hosts_in_window(self, start: datetime, end: datetime) -> int:
        """The most hosts stored for one hour of [start, end), sampled at most 25 hours."""
        hours = pd.date_range(start, end, freq="h", inclusive="left")
        sample = hours[:: max(1, len(hours) // 24)].append(hours[-1:])
        with phase("postgres_read"), self.connect() as conn:
            (hosts,) = conn.execute(
                load_query("hosts_in_window"), {"hours": [h.to_pydatetime() for h in sample]}
            ).fetchone()
        return int(hosts)

    def read_frame(
        self, query: str, params: Sequence | dict | None = None, **read_csv_options
    ) -> pd.DataFrame:
        """Run a SELECT through COPY ... TO STDOUT as CSV and parse it with pandas: far
        faster than fetching rows for the hundreds of thousands a long window holds.
        Timestamps should be selected as epoch seconds and converted by the caller."""
        buffer = io.BytesIO()
        with phase("postgres_read"), self.connect() as conn, conn.cursor() as cur:
            statement = psycopg.sql.SQL("COPY ({}) TO STDOUT WITH (FORMAT CSV, HEADER)").format(
                psycopg.sql.SQL(query)
            )
            with cur.copy(statement, params) as copy:
                for block in copy:
                    buffer.write(block)
        buffer.seek(0)
        with phase("transform"):
            return pd.read_csv(buffer, keep_default_na=False, na_values=[""], **read_csv_options)


# The tables a window's dimension transaction writes, in the order creating the facts'
# monthly partitions locks them (each partition's foreign keys take SHARE ROW EXCLUSIVE on
# the table referenced, fact table by fact table: project, machine, group, user, then the
# workspaces' sessions).
DIMENSION_TABLES = (
    "dim_project",
    "dim_machine",
    "dim_group",
    "dim_user",
    "dim_instance",
    "workspace_session",
)


def lock_dimensions(conn: psycopg.Connection) -> None:
    """Take, first thing in a dimension transaction, the lock its writes would take anyway
    (ROW EXCLUSIVE, which never makes two windows wait), on every dimension table in the
    order partition creation takes its own: a window that writes users and then groups would
    otherwise deadlock with a window creating the next month's partitions, which locks groups
    and then users."""
    conn.execute(
        f"LOCK TABLE {', '.join('public.' + t for t in DIMENSION_TABLES)} IN ROW EXCLUSIVE MODE"
    )


def dimension_ids(
    conn: psycopg.Connection,
    table: str,
    key_column: str,
    id_column: str,
    rows: pd.DataFrame,
    update_columns: Sequence[str] = (),
    only_existing: bool = False,
    as_of_column: str | None = None,
) -> dict[str, int]:
    """Insert the dimension rows that are missing, update update_columns of the ones that
    exist and differ, and return {key: id} for every key in rows. With as_of_column (one of
    update_columns), a row is only updated by values at least as recent as its own, and only
    when another of its columns differs. With only_existing, write nothing and return the ids
    of the keys that exist.

    Only rows that are missing or differ are written (and so locked): runs that see the same
    dimensions never wait on each other. Call it in a short transaction of its own, not in a
    window's: ids never change, and a window's long transaction must not hold them."""
    if rows.empty:
        return {}
    rows = rows.drop_duplicates(key_column).sort_values(key_column)  # one lock order
    keys = rows[key_column].tolist()
    compared = [c for c in update_columns if c != as_of_column]
    with phase("postgres_write"), conn.cursor() as cur:
        cur.execute(
            f"SELECT {', '.join([key_column, id_column, *update_columns])} FROM {table} "
            f"WHERE {key_column} = ANY(%s)",
            (keys,),
        )
        stored = {row[0]: row for row in cur.fetchall()}
        if only_existing:
            return {key: row[1] for key, row in stored.items()}
        values = [
            tuple(_plain(v) for v in r)
            for r in rows[[key_column, *update_columns]].itertuples(index=False)
        ]
        missing = [v for v in values if v[0] not in stored]
        changed = [
            v
            for v in values
            if v[0] in stored and _differs(v, stored[v[0]], update_columns, compared, as_of_column)
        ]
        if missing:
            columns = [key_column, *update_columns]
            cur.executemany(
                f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))}) "
                f"ON CONFLICT ({key_column}) DO NOTHING",
                missing,
            )
        if changed:
            assignments = ", ".join(f"{c} = %s" for c in update_columns)
            newer = f" AND ({as_of_column} IS NULL OR {as_of_column} <= %s)" if as_of_column else ""
            cur.executemany(
                f"UPDATE {table} SET {assignments} WHERE {key_column} = %s{newer}",
                [
                    (
                        *v[1:],
                        v[0],
                        *(
                            [v[1 + list(update_columns).index(as_of_column)]]
                            if as_of_column
                            else []
                        ),
                    )
                    for v in changed
                ],
            )
        if not missing:
            return {key: row[1] for key, row in stored.items()}
        cur.execute(
            f"SELECT {key_column}, {id_column} FROM {table} WHERE {key_column} = ANY(%s)", (keys,)
        )
        return dict(cur.fetchall())


def _comparable(value):
    return value.obj if isinstance(value, Jsonb) else value


def _differs(new: tuple, row: tuple, update_columns, compared, as_of_column) -> bool:
    """Whether a stored dimension row (key, id, *update_columns) should take the new values:
    a compared column differs and, with an as-of column, the new values are not older."""
    stored = dict(zip(update_columns, row[2:], strict=True))
    proposed = dict(zip(update_columns, new[1:], strict=True))
    if not any(_comparable(proposed[c]) != stored[c] for c in compared):
        return False
    if as_of_column and stored[as_of_column] is not None and proposed[as_of_column] is not None:
        return proposed[as_of_column] >= stored[as_of_column]
    return True


def ids_of(names: pd.Series, ids: dict[str, int]) -> np.ndarray:
    """The id of every name (int64), from dimension_ids' {name: id}. An index lookup: far
    faster than Series.map(dict) on the hundreds of thousands of rows of a long window."""
    index = pd.Index(list(ids), dtype=object)
    positions = index.get_indexer(names.astype(object))
    if (positions < 0).any():
        missing = names[positions < 0].drop_duplicates().head(5).tolist()
        raise KeyError(f"no dimension id for {missing}")
    return np.fromiter(ids.values(), dtype=np.int64, count=len(ids))[positions]


def _plain(value):
    """A value psycopg can send: NULL for NaN/NaT/NA, Python scalars for numpy ones."""
    if isinstance(value, Jsonb):
        return value
    if pd.isna(value):
        return None
    return value.item() if isinstance(value, np.generic) else value


@functools.cache
def load_query(name: str) -> str:
    """The SELECT in sql/queries/<name>.sql, its comment lines dropped."""
    text = (SQL_DIR / "queries" / f"{name}.sql").read_text()
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
