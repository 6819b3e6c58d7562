"""Who held which host when: the registry's workspaces, and the stored sessions of workspaces
the registry has since purged. The registry is a live system (documents are corrected, old
deleted workspaces purged); the warehouse keeps every holding it has seen, so a purge never
moves a person's history to `unattributed`, while a corrected document re-attributes."""

from __future__ import annotations

import logging
from datetime import datetime

import pandas as pd

from carbon_pipeline.attribution import UNATTRIBUTED, holding_intervals
from carbon_pipeline.resources import RegistryResource, WarehouseResource
from carbon_pipeline.resources.warehouse import load_query
from carbon_pipeline.times import utc_ns

log = logging.getLogger(__name__)


def stored_sessions(warehouse: WarehouseResource, start: datetime, end: datetime) -> pd.DataFrame:
    """Holdings stored in workspace_session that overlap [start, end), as intervals."""
    frame = warehouse.read_frame(
        load_query("sessions_overlapping"),
        {"start": start, "end": end},
        dtype={"workspace_id": str, "hostname": str, "ext_user_id": str},
    )
    for column in ("held_from", "held_until"):
        frame[column] = utc_ns(pd.to_datetime(frame.pop(f"{column}_epoch"), unit="s", utc=True))
    frame["ext_user_id"] = frame["ext_user_id"].fillna(UNATTRIBUTED)
    return frame[["workspace_id", "hostname", "ext_user_id", "held_from", "held_until"]]


def holdings(
    registry: RegistryResource, warehouse: WarehouseResource, start: datetime, end: datetime
) -> tuple[pd.DataFrame, list[str]]:
    """(workspace_id, hostname, ext_user_id, held_from, held_until) of every workspace that may
    have held a host in [start, end): from the registry's current documents, and from the
    stored sessions of workspaces the registry no longer has; and the problems found in the
    registry's documents (each names the workspace and the field)."""
    stored = stored_sessions(warehouse, start, end)
    workspaces, problems = registry.workspaces_overlapping(
        start, end, ids=stored["workspace_id"].tolist()
    )
    purged = stored[~stored["workspace_id"].isin(workspaces["workspace_id"])]
    if len(purged):
        log.warning(
            "%d workspace(s) are no longer in the registry; their stored holdings are kept: %s",
            len(purged),
            ", ".join(purged["workspace_id"].head(5)),
        )
    intervals = holding_intervals(workspaces)
    if len(purged):
        intervals = pd.concat([intervals, purged], ignore_index=True)
    return intervals, problems


def overlapping(intervals: pd.DataFrame, start: datetime, end: datetime) -> pd.DataFrame:
    """The holdings that overlap [start, end) (held_until NaT: still held)."""
    ends = intervals["held_until"]
    keep = (intervals["held_from"] < end) & (ends.isna() | (ends > start))
    return intervals[keep].reset_index(drop=True)
