"""The API's connections: a pool of the `carbon_api` login's sessions, each request in a
read-only transaction under the role its caller may read as (`carbon_reporter` for anyone,
`carbon_analyst` for what a signed-in user or an analyst may see), with a statement timeout.
A database that is down, slow or full is DatabaseUnavailable (the app answers 503)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

from carbon_pipeline.database_url import DatabaseUrl
from carbon_pipeline.resources.warehouse import load_query

REPORTER = "carbon_reporter"
ANALYST = "carbon_analyst"


class DatabaseUnavailable(RuntimeError):
    """The warehouse did not answer in time; the message names no URL or password."""


class Database:
    def __init__(
        self,
        url: str,
        statement_timeout_seconds: float,
        pool_size: int,
        reporting_now: str | None = None,
    ):
        milliseconds = int(statement_timeout_seconds * 1000)
        now = f" -c carbon.now={reporting_now}" if reporting_now else ""
        self.timeout = statement_timeout_seconds
        self.pool = ConnectionPool(
            DatabaseUrl.parse(url).with_(scheme="postgresql").render(),
            min_size=1,
            max_size=pool_size,
            open=False,
            timeout=statement_timeout_seconds,
            kwargs={
                "options": f"-c statement_timeout={milliseconds} -c lock_timeout={milliseconds}"
                f" -c default_transaction_read_only=on -c TimeZone=UTC{now}",
                "connect_timeout": max(1, int(statement_timeout_seconds)),
                "row_factory": dict_row,
            },
            # A connection the server dropped (a restart) is found before it is handed out.
            check=ConnectionPool.check_connection,
        )

    def open(self) -> None:
        self.pool.open(wait=False)

    def close(self) -> None:
        self.pool.close()

    @contextmanager
    def read(self, role: str) -> Iterator[psycopg.Connection]:
        """A transaction as `role` (REPORTER or ANALYST), for the request's queries."""
        assert role in (REPORTER, ANALYST)
        try:
            with self.pool.connection() as conn, conn.transaction():
                conn.execute(f"SET LOCAL ROLE {role}")
                yield conn
        except PoolTimeout:
            raise DatabaseUnavailable(
                f"no connection to the warehouse within {self.timeout:g} s"
            ) from None
        except psycopg.errors.QueryCanceled:
            raise DatabaseUnavailable(
                f"the warehouse did not answer within {self.timeout:g} s"
            ) from None
        except psycopg.OperationalError:
            raise DatabaseUnavailable("the warehouse cannot be reached") from None

    def rows(self, role: str, query: str, params: dict | None = None) -> list[dict]:
        """The rows of sql/queries/<query>.sql, as `role`."""
        with self.read(role) as conn:
            return conn.execute(load_query(query), params or {}).fetchall()

    def healthy(self) -> bool:
        with self.read(REPORTER) as conn:
            return conn.execute("SELECT 1 AS ok").fetchone()["ok"] == 1
