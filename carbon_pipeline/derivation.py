"""What an hour's numbers were derived from, as versions: the power model's (with the sites)
for its host usage, the registry's holdings for its attribution. The stages record them per
hour (hour_derivation); the observable sources compare them with today's, so that a changed
model or a corrected registry document re-derives exactly the hours it changes."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime

import numpy as np
import pandas as pd

from carbon_pipeline.attribution import hourly_shares
from carbon_pipeline.resources import PowerModelResource, SitesResource, WarehouseResource
from carbon_pipeline.resources.power_model import read_overrides
from carbon_pipeline.resources.warehouse import load_query

NO_HOLDINGS = "none"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def model_version(power_model: PowerModelResource, sites: SitesResource) -> str:
    """A digest of every number host usage is computed with: the power model's defaults and
    overrides, and the sites (region, PUE) of the projects."""
    overrides = read_overrides(power_model.overrides_file) if power_model.overrides_file else {}
    by_project, rest = sites.table()
    return _digest(
        json.dumps(
            {
                "defaults": power_model.defaults(),
                "overrides": overrides,
                "sites": by_project,
                "other_projects": rest,
            },
            sort_keys=True,
        )
    )


def registry_versions(intervals: pd.DataFrame, start: datetime, end: datetime) -> pd.Series:
    """{hour: digest} for every hour of [start, end): of who held which host in it and for
    what share of the hour (the attribution's input); NO_HOLDINGS where nobody did."""
    return share_versions(hourly_shares(intervals, start, end), start, end)


def share_versions(shares: pd.DataFrame, start: datetime, end: datetime) -> pd.Series:
    """registry_versions from the hours' shares already computed (hourly_shares of [start,
    end)): the facts compute them chunk by chunk anyway."""
    hours = pd.date_range(start, end, freq="h", inclusive="left")
    versions = pd.Series(NO_HOLDINGS, index=hours, dtype=object)
    if shares.empty:
        return versions
    # A digest per row; their sums per hour do not depend on the rows' order.
    rows = pd.util.hash_pandas_object(
        shares[["hostname", "workspace_id", "ext_user_id"]].assign(
            share=np.round(shares["share"].to_numpy(dtype=float), 9)
        ),
        index=False,
    ).to_numpy()
    halves = (
        pd.DataFrame(
            {
                "timestamp_utc": shares["timestamp_utc"].array,
                "high": (rows >> np.uint64(32)).astype(np.int64),
                "low": (rows & np.uint64(0xFFFFFFFF)).astype(np.int64),
            }
        )
        .groupby("timestamp_utc")[["high", "low"]]
        .sum()
    )
    digests = [_digest(f"{high:x}.{low:x}") for high, low in halves.itertuples(index=False)]
    versions.loc[halves.index] = digests
    return versions


def stored_versions(
    warehouse: WarehouseResource, column: str, since: datetime, until: datetime
) -> pd.Series:
    """{hour: version} hour_derivation holds for [since, until) (hours before migration 0011,
    or never derived, have none: nothing to compare, so never re-derived by a change)."""
    frame = warehouse.read_frame(
        load_query("hour_derivation"), {"since": since, "until": until}, dtype={column: str}
    )
    frame = frame[frame[column].notna()]
    hours = pd.to_datetime(frame["timestamp_epoch"], unit="s", utc=True)
    return pd.Series(frame[column].to_numpy(), index=pd.DatetimeIndex(hours), dtype=object)


def changed(stored: pd.Series, today: pd.Series | str) -> pd.Series:
    """{hour: today's version} of the stored hours whose version today differs."""
    if isinstance(today, str):
        today = pd.Series(today, index=stored.index, dtype=object)
    today = today.reindex(stored.index)
    return today[today.notna() & (today != stored)]
