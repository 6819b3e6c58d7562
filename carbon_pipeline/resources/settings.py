"""Settings of the runs themselves (not of any outside system)."""

from __future__ import annotations

import dagster as dg
from pydantic import Field


class PipelineSettings(dg.ConfigurableResource):
    """How a run processes its window."""

    chunk_hours: int = Field(
        default=744,
        description=(
            "Hours processed at a time inside a run; bounds memory (31 days by default: about "
            "75 k host-hours for 100 hosts; lower it for fleets of thousands of hosts)."
        ),
    )
