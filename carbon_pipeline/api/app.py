"""The API's application: routers, who is asking, CORS, and answers for every fault (a bad
token 401, someone else's data 403, the warehouse or the token issuer unreachable 503 with
Retry-After; never a traceback or a secret). `carbon-pipeline api` serves it under uvicorn."""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from urllib.parse import urlparse

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from carbon_pipeline.api import carbon, history, usage
from carbon_pipeline.api.auth import Forbidden, IssuerUnavailable, TokenVerifier, Unauthorized
from carbon_pipeline.api.cache import AnonymousCache
from carbon_pipeline.api.db import Database, DatabaseUnavailable
from carbon_pipeline.api.models import Health, Tracked
from carbon_pipeline.api.settings import ApiSettings
from carbon_pipeline.resources.power_model import PowerModelResource
from carbon_pipeline.secrets import mask_secrets

log = logging.getLogger("carbon_pipeline.api")
RETRY_AFTER_SECONDS = 5

DESCRIPTION = """The carbon monitoring backend of the Ada platform (the seed's
`ada-carbon-monitoring-api`), served from the carbon-pipeline warehouse: every route of the
seed at the same path, each a read of what the pipeline stored. Without a token a caller sees
what `carbon_reporter` sees (docs/security.md); a bearer token from the configured OpenID
Connect issuer shows its holder's own workspaces and usage; the analyst claim shows everything.
docs/api.md is the reference."""


def graphql_launcher(url: str) -> Callable[[datetime], Tracked]:
    """Launches the hourly job for an hour through the Dagster webserver's GraphQL API."""
    from dagster_graphql import DagsterGraphQLClient

    from carbon_pipeline.partitions import PARTITION_KEY_FORMAT

    where = urlparse(url)
    client = DagsterGraphQLClient(
        where.hostname or "localhost", port_number=where.port, use_https=where.scheme == "https"
    )

    def launch(hour: datetime) -> Tracked:
        key = hour.strftime(PARTITION_KEY_FORMAT)
        run_id = client.submit_job_execution("hourly_carbon_job", tags={"dagster/partition": key})
        return Tracked(run_id=run_id, partition=key, status="submitted")

    return launch


def create_app(
    settings: ApiSettings,
    power_model: PowerModelResource | None = None,
    launch_hour: Callable[[datetime], Tracked] | None = None,
) -> FastAPI:
    database = Database(
        settings.database_url,
        settings.statement_timeout_seconds,
        settings.pool_size,
        settings.reporting_now,
    )
    verifier = TokenVerifier(
        settings.oidc_issuer,
        settings.oidc_audience,
        settings.oidc_jwks_url,
        settings.username_claim,
        settings.analyst_claim,
        settings.analyst_value,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        database.open()
        yield
        database.close()

    app = FastAPI(
        title="Ada carbon monitoring API",
        version="2.0.0",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.database = database
    app.state.power_model = power_model or PowerModelResource.from_env()
    app.state.launch_hour = launch_hour
    fixed = (
        datetime.fromisoformat(settings.reporting_now.replace("Z", "+00:00"))
        if settings.reporting_now
        else None
    )
    app.state.clock = (lambda: fixed) if fixed else (lambda: datetime.now(UTC))
    for router in (carbon.router, usage.workspaces, usage.users, usage.groups, history.router):
        app.include_router(router)

    def problem(status: int, message: str, **headers: str) -> JSONResponse:
        return JSONResponse({"detail": message}, status_code=status, headers=headers or None)

    @app.middleware("http")
    async def who_is_asking(request: Request, call_next):
        # PostgreSQL text cannot hold NUL: such a name or value can name nothing stored.
        for field, value in [("path", request.url.path), *request.query_params.multi_items()]:
            if "\x00" in value:
                return JSONResponse(
                    {
                        "detail": [
                            {
                                "loc": ["query" if field != "path" else "path", field],
                                "msg": "a NUL character names nothing",
                                "type": "value_error",
                            }
                        ]
                    },
                    status_code=422,
                )
        try:
            request.state.caller = await run_in_threadpool(
                verifier.caller, request.headers.get("authorization")
            )
        except Unauthorized as exc:
            return problem(401, str(exc), **{"WWW-Authenticate": "Bearer"})
        except IssuerUnavailable as exc:
            return problem(503, str(exc), **{"Retry-After": str(RETRY_AFTER_SECONDS)})
        return await call_next(request)

    @app.exception_handler(Unauthorized)
    async def unauthorized(request: Request, exc: Unauthorized):
        return problem(401, str(exc), **{"WWW-Authenticate": "Bearer"})

    @app.exception_handler(Forbidden)
    async def forbidden(request: Request, exc: Forbidden):
        return problem(403, str(exc))

    @app.exception_handler(DatabaseUnavailable)
    async def unavailable(request: Request, exc: DatabaseUnavailable):
        log.warning("%s %s: %s", request.method, request.url.path, exc)
        return problem(
            503, f"{exc}; try again shortly", **{"Retry-After": str(RETRY_AFTER_SECONDS)}
        )

    @app.exception_handler(Exception)
    async def failed(request: Request, exc: Exception):
        log.error("%s %s failed: %s", request.method, request.url.path, mask_secrets(repr(exc)))
        return problem(500, "the request failed; it has been logged")

    @app.get(
        "/health",
        response_model=Health,
        tags=["health"],
        description="200 when the warehouse answers, else 503.",
    )
    def health() -> Health:
        database.healthy()  # DatabaseUnavailable: 503
        return Health(status="ok", database="ok")

    # Outside CORS (added after it): a kept answer still gets the caller's CORS headers.
    app.add_middleware(AnonymousCache, seconds=settings.cache_seconds)
    if settings.cors_allowed_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_allowed_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )
    return app


def app_from_env() -> FastAPI:
    """The app as `carbon-pipeline api` serves it: configured from the environment."""
    import os

    settings = ApiSettings.from_env()
    url = os.getenv("API_DAGSTER_WEBSERVER_URL")
    return create_app(settings, launch_hour=graphql_launcher(url) if url else None)
