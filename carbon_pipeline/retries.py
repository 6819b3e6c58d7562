"""The retry policy of every asset: a second line of defence behind the HTTP clients' own."""

from __future__ import annotations

import dagster as dg

from carbon_pipeline.config import env_float, env_int


def asset_retry_policy() -> dg.RetryPolicy:
    """CARBON_PIPELINE_ASSET_RETRIES retries (default 2), 30 s apart and doubling."""
    return dg.RetryPolicy(
        max_retries=env_int("CARBON_PIPELINE_ASSET_RETRIES", 2, minimum=0),
        delay=env_float("CARBON_PIPELINE_ASSET_RETRY_DELAY_SECONDS", 30.0, minimum=0),
        backoff=dg.Backoff.EXPONENTIAL,
    )
