"""Who used a host-hour: workspaces' holding intervals turned into shares, and the scope facts.

A workspace holds its host from max(created_time, acquired_time) until deleted_time (absent:
still held). A host-hour is split between the workspaces that held it in proportion to how
long each held it; the part of the hour no workspace held goes to the reserved user
`unattributed`. Where holdings overlap, the time held by anyone is shared between them in
proportion to how long each held it: a host-hour is never attributed more than once, and
time nobody held stays unattributed.
"""

from __future__ import annotations

import logging
from datetime import datetime

import numpy as np
import pandas as pd

from carbon_pipeline.energy import METRICS, sum_metrics
from carbon_pipeline.hosts import normalise_host

log = logging.getLogger(__name__)

UNATTRIBUTED = "unattributed"
SCOPES = ("ada", "project", "machine", "group", "user")
SCOPE_KEYS = {
    "ada": [],
    "project": ["cloud_project_name"],
    "machine": ["machine_name"],
    "group": ["group_name"],
    "user": ["ext_user_id"],
}


class GroupNameError(ValueError):
    """Two (project, machine) pairs give the same group name."""


def group_name(cloud_project_name: pd.Series, machine_name: pd.Series) -> pd.Series:
    """The machine group of a host: `{cloud_project_name}_{machine_name}`."""
    return cloud_project_name.astype(str) + "_" + machine_name.astype(str)


def refuse_colliding_groups(groups: pd.DataFrame) -> None:
    """Refuse group names that two (project, machine) pairs share (`A_B` + `C` and `A` +
    `B_C` both give `A_B_C`): their usage would be summed into one group, and the registry's
    group document could be either's. `groups`: group_name, cloud_project_name, machine_name
    of the pairs seen now and of those stored."""
    pairs = groups.drop_duplicates(["group_name", "cloud_project_name", "machine_name"])
    shared = pairs[pairs.duplicated("group_name", keep=False)].sort_values(
        ["group_name", "cloud_project_name", "machine_name"]
    )
    if len(shared):
        name = shared["group_name"].iloc[0]
        both = shared[shared["group_name"] == name]
        raise GroupNameError(
            f"the group name {name!r} would stand for "
            + " and ".join(
                f"project {p!r} with machine {m!r}"
                for p, m in zip(both["cloud_project_name"], both["machine_name"], strict=True)
            )
            + "; rename one of the Prometheus labels (or relabel it in the scrape config)"
        )


def holding_intervals(workspaces: pd.DataFrame) -> pd.DataFrame:
    """(workspace_id, hostname, ext_user_id, held_from, held_until) per workspace; held_until
    NaT = still held. Workspaces whose interval is empty or inverted hold nothing; no owner ->
    unattributed."""
    no_host = workspaces["hostname"].isna() | (workspaces["hostname"].astype(str).str.strip() == "")
    if no_host.any():
        log.warning("%d workspace(s) have no hostname and hold nothing", int(no_host.sum()))
        workspaces = workspaces[~no_host]
    if workspaces.empty:
        return pd.DataFrame(
            {
                "workspace_id": pd.Series(dtype=object),
                "hostname": pd.Series(dtype=object),
                "ext_user_id": pd.Series(dtype=object),
                "held_from": pd.Series(dtype="datetime64[ns, UTC]"),
                "held_until": pd.Series(dtype="datetime64[ns, UTC]"),
            }
        )
    held_from = workspaces["created_time"].where(
        workspaces["acquired_time"].isna()
        | (workspaces["created_time"] >= workspaces["acquired_time"]),
        workspaces["acquired_time"],
    )
    owner = workspaces["owner"].where(workspaces["owner"].notna() & (workspaces["owner"] != ""))
    intervals = pd.DataFrame(
        {
            "workspace_id": workspaces["workspace_id"],
            "hostname": workspaces["hostname"].map(normalise_host),
            "ext_user_id": owner.fillna(UNATTRIBUTED),
            "held_from": held_from,
            "held_until": workspaces["deleted_time"],
        }
    )
    empty = intervals["held_until"].notna() & (intervals["held_until"] <= intervals["held_from"])
    if empty.any():
        log.warning("%d workspace(s) end before they start and hold nothing", int(empty.sum()))
    return intervals[~empty & intervals["held_from"].notna()].reset_index(drop=True)


def _naive_ns(times: pd.Series) -> np.ndarray:
    """UTC times as naive datetime64[ns] (NaT kept)."""
    return pd.to_datetime(times, utc=True).dt.tz_convert(None).to_numpy().astype("datetime64[ns]")


def hourly_shares(intervals: pd.DataFrame, start: datetime, end: datetime) -> pd.DataFrame:
    """(timestamp_utc, hostname, workspace_id, ext_user_id, share) for every hour of
    [start, end) a holding overlaps; shares of one host-hour sum to at most 1."""
    # Plain UTC datetime64[ns] arrays from here: vectorised interval arithmetic.
    start = np.datetime64(pd.Timestamp(start).tz_convert(None), "ns")
    end = np.datetime64(pd.Timestamp(end).tz_convert(None), "ns")
    held_from = np.maximum(_naive_ns(intervals["held_from"]), start)
    until = _naive_ns(intervals["held_until"])
    held_until = np.minimum(np.where(np.isnat(until), end, until), end)
    keep = held_until > held_from
    held_from, held_until = held_from[keep], held_until[keep]
    hour_ns = np.timedelta64(3600, "s").astype("timedelta64[ns]")
    first_hour = held_from.astype("datetime64[h]").astype("datetime64[ns]")
    n_hours = -((first_hour - held_until) // hour_ns)  # ceil division
    rows = np.repeat(np.arange(len(held_from)), n_hours)
    offsets = np.arange(len(rows)) - np.repeat(np.cumsum(n_hours) - n_hours, n_hours)
    hour = first_hour[rows] + offsets * hour_ns
    overlap_start = np.maximum(held_from[rows], hour)
    overlap_end = np.minimum(held_until[rows], hour + hour_ns)
    seconds = (overlap_end - overlap_start) / np.timedelta64(1, "s")
    hostnames = intervals["hostname"].to_numpy()[keep]
    users = intervals["ext_user_id"].to_numpy()[keep]
    workspace_ids = intervals["workspace_id"].to_numpy()[keep]
    pieces = pd.DataFrame(
        {
            "timestamp_utc": pd.DatetimeIndex(hour).tz_localize("UTC"),
            "hostname": hostnames[rows],
            "workspace_id": workspace_ids[rows],
            "ext_user_id": users[rows],
            "piece_start": overlap_start.astype(np.int64),
            "piece_end": overlap_end.astype(np.int64),
            "held_seconds": seconds,
        }
    )
    pieces = pieces[pieces["held_seconds"] > 0]
    host_hour = ["timestamp_utc", "hostname"]
    covered = _covered_seconds(pieces, host_hour)
    shares = pieces.groupby([*host_hour, "workspace_id", "ext_user_id"], as_index=False)[
        "held_seconds"
    ].sum()
    total = shares.groupby(host_hour)["held_seconds"].transform("sum")
    covered = (
        shares[host_hour].merge(covered, on=host_hour, how="left")["covered_seconds"].to_numpy()
    )
    overlapping = total.to_numpy() > covered + 1e-6
    if overlapping.any():
        log.warning(
            "%d host-hour(s) are held by overlapping workspaces; they share the time held "
            "in proportion to how long each held it",
            shares.loc[overlapping, host_hour].drop_duplicates().shape[0],
        )
    # Each holder's part of the time some workspace held the host; the rest of the hour is
    # nobody's (unattributed). Without overlaps this is simply held seconds / 3600.
    shares["share"] = shares["held_seconds"] / total * covered / 3600.0
    return shares[["timestamp_utc", "hostname", "workspace_id", "ext_user_id", "share"]]


def _covered_seconds(pieces: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Per key, the length [s] of the union of the pieces' [piece_start, piece_end)."""
    ordered = pieces.sort_values([*keys, "piece_start"], kind="stable")
    reach = ordered.groupby(keys, sort=False)["piece_end"].cummax()
    before = reach.groupby([ordered[k] for k in keys], sort=False).shift(1)
    begin = np.maximum(
        ordered["piece_start"].to_numpy(), before.fillna(np.iinfo(np.int64).min).to_numpy()
    )
    new_ns = np.clip(ordered["piece_end"].to_numpy() - begin, 0, None)
    return (
        ordered.assign(covered_seconds=new_ns / 1e9)
        .groupby(keys, as_index=False)["covered_seconds"]
        .sum()
    )


def user_usage(host_usage: pd.DataFrame, shares: pd.DataFrame) -> pd.DataFrame:
    """Per (hour, user) metrics: each host-hour times each holder's share, plus the unheld
    remainder as `unattributed`."""
    held = host_usage.merge(shares, on=["timestamp_utc", "hostname"], how="inner")
    held_share = (
        shares.groupby(["timestamp_utc", "hostname"])["share"]
        .sum()
        .rename("held_share")
        .reset_index()
    )
    rest = host_usage.merge(held_share, on=["timestamp_utc", "hostname"], how="left")
    rest["share"] = (1.0 - rest["held_share"].fillna(0.0)).clip(lower=0.0)
    rest["ext_user_id"] = UNATTRIBUTED
    rest = rest[rest["share"] > 0]
    parts = pd.concat([held, rest.drop(columns="held_share")], ignore_index=True)
    parts[METRICS] = parts[METRICS].mul(parts["share"], axis=0)
    return sum_metrics(parts, ["timestamp_utc", "ext_user_id"])


def workspace_usage(host_usage: pd.DataFrame, shares: pd.DataFrame) -> pd.DataFrame:
    """Per (workspace, hour): its share of its host-hour's metrics, with the hour's intensity
    and the host's labels (for the session's machine, project and group)."""
    held = host_usage.merge(shares, on=["timestamp_utc", "hostname"], how="inner")
    held[METRICS] = held[METRICS].mul(held["share"], axis=0)
    keys = ["workspace_id", "timestamp_utc"]
    # A host seen under two label sets in one hour contributes both rows.
    summed = sum_metrics(held, keys)
    labels = held.drop_duplicates(keys, keep="last")[
        [
            *keys,
            "hostname",
            "cloud_project_name",
            "machine_name",
            "intensity_gco2eq_per_kwh",
            "intensity_source",
        ]
    ]
    return summed.merge(labels, on=keys)


def scope_facts(host_usage: pd.DataFrame, shares: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The five scope facts of the host-hours: {scope: frame keyed by (timestamp_utc, key)},
    each with the hour's intensity and its source."""
    usage = host_usage.assign(
        group_name=group_name(host_usage["cloud_project_name"], host_usage["machine_name"])
    )
    hour_intensity = usage.groupby("timestamp_utc", as_index=False)[
        ["intensity_gco2eq_per_kwh", "intensity_source"]
    ].first()
    # Who held which host-hour (unattributed is nobody), under each of its label sets.
    held = usage.merge(
        shares.loc[
            shares["ext_user_id"] != UNATTRIBUTED, ["timestamp_utc", "hostname", "ext_user_id"]
        ],
        on=["timestamp_utc", "hostname"],
    )
    facts = {}
    for scope in SCOPES:
        if scope == "user":
            frame = user_usage(usage, shares)
        else:
            keys = ["timestamp_utc", *SCOPE_KEYS[scope]]
            frame = sum_metrics(usage, keys)
            users = held.groupby(keys)["ext_user_id"].nunique().rename("users").reset_index()
            frame = frame.merge(users, on=keys, how="left")
            frame["users"] = frame["users"].fillna(0).astype("int64")
        facts[scope] = frame.merge(hour_intensity, on="timestamp_utc", how="left")
    return facts
