"""Missing is never zero: which host-hours the record lacks although the host was up.

A host is known to be up in an hour when a workspace held it during some of the hour, or when
it reported both before and after the hour (within LOOKAROUND of the window). Such a host-hour
with nothing in the record (neither plausible nor quarantined) is a gap; so is an hour in which
no host reported at all, and every hour of a Prometheus answer that came with warnings (partial
data). Gaps are stored in `host_cpu_gaps` with their reason, so that analysts can tell "no
usage" from "no data".
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from carbon_pipeline.resources.prometheus import UNIDENTIFIED
from carbon_pipeline.times import hour_range

LOOKAROUND = timedelta(hours=24)
WHOLE_HOUR = "*"  # the hostname of a gap that concerns the whole hour
HELD = "held by a workspace but not reported"
BETWEEN = "not reported, though it reported before and after"
NO_HOST = "no host reported"
GAP_COLUMNS = ["timestamp_utc", "hostname", "cloud_project_name", "machine_name", "reason"]


def _hours_since(times: pd.Series, origin: np.datetime64) -> np.ndarray:
    """Hours from origin to each time, as floats (NaN for NaT)."""
    naive = pd.to_datetime(times, utc=True).dt.tz_convert(None).to_numpy().astype("datetime64[ns]")
    return (naive - origin) / np.timedelta64(1, "h")


class Coverage:
    """Which hosts reported in which hours of [start, end) and LOOKAROUND either side: a host x
    hour matrix of booleans, so that a year of thousands of hosts stays small."""

    def __init__(self, start: datetime, end: datetime):
        self.hours = hour_range(start - LOOKAROUND, end + LOOKAROUND)
        self._origin = np.datetime64(self.hours[0].tz_convert(None), "ns")
        margin = int(LOOKAROUND / timedelta(hours=1))
        self._window = slice(margin, len(self.hours) - margin)
        self._rows: dict[str, int] = {}
        self._seen = np.zeros((64, len(self.hours)), dtype=bool)
        self._labels: dict[str, tuple[str, str]] = {}
        self._warnings: list[tuple[str, datetime, datetime]] = []

    def _row_of(self, hostnames: np.ndarray) -> np.ndarray:
        for name in pd.unique(hostnames):
            if name not in self._rows:
                self._rows[name] = len(self._rows)
        if len(self._rows) > len(self._seen):
            grown = np.zeros((2 * len(self._rows), len(self.hours)), dtype=bool)
            grown[: len(self._seen)] = self._seen
            self._seen = grown
        return np.fromiter((self._rows[h] for h in hostnames), dtype=np.int64, count=len(hostnames))

    def reported(self, frame: pd.DataFrame) -> None:
        """Host-hours (timestamp_utc, hostname, cloud_project_name, machine_name) in the record."""
        hosts = frame[frame["hostname"] != UNIDENTIFIED].drop_duplicates(
            ["timestamp_utc", "hostname"]
        )
        if hosts.empty:
            return
        hour = _hours_since(hosts["timestamp_utc"], self._origin).astype(np.int64)
        inside = (hour >= 0) & (hour < len(self.hours))
        hosts, hour = hosts[inside], hour[inside]
        rows = self._row_of(hosts["hostname"].to_numpy(dtype=object))  # may grow _seen
        self._seen[rows, hour] = True
        latest = hosts.sort_values("timestamp_utc").drop_duplicates("hostname", keep="last")
        self._labels.update(
            zip(
                latest["hostname"],
                zip(latest["cloud_project_name"], latest["machine_name"], strict=True),
                strict=True,
            )
        )

    def warned(self, warnings: list[str], start: datetime, end: datetime) -> None:
        """Prometheus said its answer for the hours [start, end) may be partial."""
        self._warnings.extend((w, start, end) for w in warnings)

    def gaps(self, holdings: pd.DataFrame) -> pd.DataFrame:
        """The gaps of the window, given the holdings (hostname, held_from, held_until; NaT
        until: still held) of the workspaces that overlap it."""
        self._row_of(holdings["hostname"].dropna().to_numpy(dtype=object))
        n_hosts, n_hours = len(self._rows), len(self.hours)
        seen = self._seen[:n_hosts]
        # Up between its first and last report.
        ever = seen.any(axis=1)
        first = np.where(ever, seen.argmax(axis=1), n_hours)
        last = np.where(ever, n_hours - 1 - seen[:, ::-1].argmax(axis=1), -1)
        columns = np.arange(n_hours)
        between = (columns >= first[:, None]) & (columns <= last[:, None])
        # Up while a workspace held it during some of the hour: +1 from the hour a holding
        # begins in, -1 after the last hour it touches.
        held = np.zeros((n_hosts, n_hours + 1), dtype=np.int32)
        holdings = holdings[holdings["hostname"].notna()]
        if len(holdings):
            rows = np.fromiter(
                (self._rows[h] for h in holdings["hostname"]), dtype=np.int64, count=len(holdings)
            )
            begin = np.floor(_hours_since(holdings["held_from"], self._origin))
            stop = np.ceil(_hours_since(holdings["held_until"], self._origin))
            stop = np.where(np.isnan(stop), n_hours, stop)
            begin, stop = np.clip(begin, 0, n_hours), np.clip(stop, 0, n_hours)
            valid = stop > begin
            np.add.at(held, (rows[valid], begin[valid].astype(np.int64)), 1)
            np.add.at(held, (rows[valid], stop[valid].astype(np.int64)), -1)
        held = np.cumsum(held, axis=1)[:, :-1] > 0
        window = self._window
        missing = ~seen[:, window] & (held[:, window] | between[:, window])
        host_rows, hour_cols = np.nonzero(missing)
        hostnames = np.array(list(self._rows), dtype=object)
        window_hours = self.hours[window]
        labels = [self._labels.get(h, (None, None)) for h in hostnames[host_rows]]
        gaps = pd.DataFrame(
            {
                "timestamp_utc": window_hours[hour_cols],
                "hostname": hostnames[host_rows],
                "cloud_project_name": [p for p, _ in labels],
                "machine_name": [m for _, m in labels],
                "reason": np.where(held[:, window][host_rows, hour_cols], HELD, BETWEEN),
            }
        )
        whole: dict[pd.Timestamp, list[str]] = {}
        for hour in window_hours[~seen[:, window].any(axis=0)]:
            whole.setdefault(hour, []).append(NO_HOST)
        for warning, start, end in self._warnings:
            for hour in window_hours[(window_hours >= start) & (window_hours < end)]:
                whole.setdefault(hour, []).append(f"Prometheus warned: {warning}")
        hours_frame = pd.DataFrame(
            {
                "timestamp_utc": pd.DatetimeIndex(list(whole), dtype=window_hours.dtype),
                "hostname": WHOLE_HOUR,
                "cloud_project_name": None,
                "machine_name": None,
                "reason": ["; ".join(r) for r in whole.values()],
            }
        )
        frame = pd.concat([gaps, hours_frame], ignore_index=True)[GAP_COLUMNS]
        return frame.sort_values(["timestamp_utc", "hostname"], ignore_index=True)
