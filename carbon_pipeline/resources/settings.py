"""Settings of the runs themselves (not of any outside system)."""

from __future__ import annotations

import dagster as dg
from pydantic import Field


class PipelineSettings(dg.ConfigurableResource):
    """How a run processes its window: in chunks of hours sized by the fleet, so that the
    memory a run holds does not grow with the number of hosts."""

    chunk_hours: int = Field(
        default=744,
        description="At most this many hours a chunk (31 days).",
    )
    chunk_host_hours: int = Field(
        default=75_000,
        description=(
            "Host-hours a chunk holds at most: hours a chunk = this / hosts (100 hosts: 744 "
            "hours; 10,000 hosts: 7 hours). What a run holds in memory grows with it."
        ),
    )

    def chunk_hours_for(self, hosts: int) -> int:
        """Hours a chunk of a window with this many hosts spans."""
        return max(1, min(self.chunk_hours, self.chunk_host_hours // max(hosts, 1)))
