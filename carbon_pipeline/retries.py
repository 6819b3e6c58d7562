"""The retry policy of every asset: a second line of defence behind the HTTP clients' own."""

from __future__ import annotations

import os

import dagster as dg


def asset_retry_policy() -> dg.RetryPolicy:
    """CARBON_PIPELINE_ASSET_RETRIES retries (default 2), 30 s apart and doubling."""
    return dg.RetryPolicy(
        max_retries=int(os.getenv("CARBON_PIPELINE_ASSET_RETRIES", "2")),
        delay=float(os.getenv("CARBON_PIPELINE_ASSET_RETRY_DELAY_SECONDS", "30")),
        backoff=dg.Backoff.EXPONENTIAL,
    )
