"""The API's configuration, from environment variables (docs/api.md lists each beside the seed's
ini key it replaces). Read once, when the app is made; a malformed value stops with one line
naming the variable."""

from __future__ import annotations

from dataclasses import dataclass

from carbon_pipeline.config import ConfigError, env, env_float, env_int


@dataclass(frozen=True)
class ApiSettings:
    database_url: str
    cors_allowed_origins: tuple[str, ...] = ()
    oidc_issuer: str | None = None
    oidc_audience: str | None = None
    oidc_jwks_url: str | None = None
    username_claim: str = "preferred_username"
    analyst_claim: str = "groups"
    analyst_value: str = "carbon-analyst"
    statement_timeout_seconds: float = 5.0
    pool_size: int = 10
    # The time "now" and relative periods are measured from (the warehouse's carbon.now):
    # unset, the clock; set, e.g. for a demo's historical data.
    reporting_now: str | None = None
    # How long an answer to a caller without rights is kept (API_CACHE_SECONDS; 0: never).
    cache_seconds: float = 30.0

    @classmethod
    def from_env(cls) -> ApiSettings:
        url = env("API_DATABASE_URL") or env("DATABASE_URL")
        if not url:
            raise ConfigError(
                "set API_DATABASE_URL: a login of the role carbon_api (docs/api.md), "
                "or DATABASE_URL"
            )
        origins = tuple(
            o.strip() for o in (env("API_CORS_ALLOWED_ORIGINS") or "").split(",") if o.strip()
        )
        return cls(
            database_url=url,
            cors_allowed_origins=origins,
            oidc_issuer=env("API_OIDC_ISSUER"),
            oidc_audience=env("API_OIDC_AUDIENCE"),
            oidc_jwks_url=env("API_OIDC_JWKS_URL"),
            username_claim=env("API_OIDC_USERNAME_CLAIM", "preferred_username"),
            analyst_claim=env("API_OIDC_ANALYST_CLAIM", "groups"),
            analyst_value=env("API_OIDC_ANALYST_VALUE", "carbon-analyst"),
            statement_timeout_seconds=env_float("API_STATEMENT_TIMEOUT_SECONDS", 5.0, 0.1),
            pool_size=env_int("API_DATABASE_POOL_SIZE", 10, minimum=1),
            reporting_now=env("API_REPORTING_NOW"),
            cache_seconds=env_float("API_CACHE_SECONDS", 30.0, 0.0),
        )
