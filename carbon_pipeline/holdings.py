"""Who held which host when: the registry's workspaces, and the stored sessions of workspaces
the registry has since purged. The registry is a live system (documents are corrected, old
deleted workspaces purged); the warehouse keeps every holding it has seen, so a purge never
moves a person's history to `unattributed`, while a corrected document re-attributes."""

from __future__ import annotations

import logging
import threading
from datetime import datetime

import pandas as pd

from carbon_pipeline.attribution import UNATTRIBUTED, holding_intervals
from carbon_pipeline.resources import RegistryResource, WarehouseResource
from carbon_pipeline.resources.warehouse import load_query
from carbon_pipeline.times import utc_ns

log = logging.getLogger(__name__)

# The registry's answer for a window, kept for the rest of the run that asked: the run's
# coverage check (host_cpu_seconds) and its attribution (usage_facts) see one snapshot of the
# registry, and it is asked once. Keyed by run id; a new run asks again.
_answers: dict[tuple, tuple[pd.DataFrame, list[str], frozenset[str]]] = {}
_answers_lock = threading.Lock()  # runs in threads of one process (tests) share it


def stored_sessions(warehouse: WarehouseResource, start: datetime, end: datetime) -> pd.DataFrame:
    """Holdings stored in workspace_session that overlap [start, end), as intervals, with
    when the registry last showed each (last_seen, NaT if never recorded)."""
    frame = warehouse.read_frame(
        load_query("sessions_overlapping"),
        {"start": start, "end": end},
        dtype={"workspace_id": str, "hostname": str, "ext_user_id": str},
    )
    for column in ("held_from", "held_until", "last_seen"):
        frame[column] = utc_ns(pd.to_datetime(frame.pop(f"{column}_epoch"), unit="s", utc=True))
    frame["last_seen"] = frame["last_seen"].dt.round("us")  # a float epoch's noise
    frame["ext_user_id"] = frame["ext_user_id"].fillna(UNATTRIBUTED)
    return frame[
        ["workspace_id", "hostname", "ext_user_id", "held_from", "held_until", "last_seen"]
    ]


def registry_answer(
    registry: RegistryResource, start: datetime, end: datetime, ids: list[str], run_id: str
) -> tuple[pd.DataFrame, list[str]]:
    """registry.workspaces_overlapping, asked once per run and window (see _answers): again
    only if `ids` holds a workspace the first answer did not look up."""
    key = (run_id, registry.mongo_uri, registry.database, start, end)
    with _answers_lock:
        cached = _answers.get(key)
    if cached is not None:
        workspaces, problems, asked = cached
        if set(ids) <= asked | set(workspaces["workspace_id"]):
            return workspaces, problems
    workspaces, problems = registry.workspaces_overlapping(start, end, ids=ids)
    with _answers_lock:
        for other in [k for k in _answers if k[0] != run_id]:
            del _answers[other]
        _answers[key] = (workspaces, problems, frozenset(ids))
    return workspaces, problems


def holdings(
    registry: RegistryResource,
    warehouse: WarehouseResource,
    start: datetime,
    end: datetime,
    run_id: str,
) -> tuple[pd.DataFrame, list[str]]:
    """(workspace_id, hostname, ext_user_id, held_from, held_until, in_registry) of every
    workspace that may have held a host in [start, end): from the registry's documents (as
    the run `run_id` first saw them), and from the stored sessions of workspaces the registry
    no longer has; and the problems found in the registry's documents (each names the
    workspace and the field). A stored session still open when its workspace left the
    registry ends when the registry last showed it: a deleted and purged workspace holds its
    host no longer than that."""
    stored = stored_sessions(warehouse, start, end)
    workspaces, problems = registry_answer(
        registry, start, end, stored["workspace_id"].tolist(), run_id
    )
    purged = stored[~stored["workspace_id"].isin(workspaces["workspace_id"])]
    if len(purged):
        log.warning(
            "%d workspace(s) are no longer in the registry; their stored holdings are kept: %s",
            len(purged),
            ", ".join(purged["workspace_id"].head(5)),
        )
    intervals = holding_intervals(workspaces).assign(in_registry=True)
    if len(purged):
        purged = purged.assign(
            held_until=purged["held_until"].fillna(purged["last_seen"]), in_registry=False
        )
        intervals = pd.concat([intervals, purged.drop(columns="last_seen")], ignore_index=True)
    return intervals, problems


def overlapping(intervals: pd.DataFrame, start: datetime, end: datetime) -> pd.DataFrame:
    """The holdings that overlap [start, end) (held_until NaT: still held)."""
    ends = intervals["held_until"]
    keep = (intervals["held_from"] < end) & (ends.isna() | (ends > start))
    return intervals[keep].reset_index(drop=True)
