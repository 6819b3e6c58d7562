"""Missing is never zero: which host-hours the record lacks although the host was up.

A host is known to be up in an hour when a workspace held it during the hour (for more than
HOLDING_EDGE_TOLERANCE: a holding that begins or ends within a scrape interval of the hour's
edge does not make the host owe that hour a sample), or when the hour lies in a silence of at
most NEIGHBOURS hours between two reports of the same identity — host, project and machine:
an address reused by another project's VM is another host. A host silent for longer (a VM
stopped) is up only where a workspace held it.

Such a host-hour with nothing in the record (neither plausible nor quarantined) is a gap; so
is an hour in which no host reported at all, and every hour of a Prometheus answer that came
with warnings (partial data). Gaps are stored in `host_cpu_gaps` with their reason, so that
analysts can tell "no usage" from "no data".

"Before and after" gaps depend on hours other runs may store, later or at the same time: they
are not stored but computed from the record whenever read (view `v_host_cpu_gaps`, the same
rule in SQL), so they are the same however a range was run. A run counts those it can see
(its window with NEIGHBOURS hours either side of the record) in its `coverage` check.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from carbon_pipeline.resources.prometheus import UNIDENTIFIED
from carbon_pipeline.times import hour_range

NEIGHBOURS = 3  # hours either side of an hour in which a host's reports make it "up"
AROUND = timedelta(hours=NEIGHBOURS)
HOLDING_EDGE_TOLERANCE = timedelta(minutes=2)
WHOLE_HOUR = "*"  # the hostname of a gap that concerns the whole hour
HELD = "held by a workspace but not reported"
BETWEEN = "not reported, though it reported before and after"
NO_HOST = "no host reported"
GAP_COLUMNS = ["timestamp_utc", "hostname", "cloud_project_name", "machine_name", "reason"]
IDENTITY = ["hostname", "cloud_project_name", "machine_name"]


def _hours_since(times: pd.Series, origin: np.datetime64) -> np.ndarray:
    """Hours from origin to each time, as floats (NaN for NaT)."""
    naive = pd.to_datetime(times, utc=True).dt.tz_convert(None).to_numpy().astype("datetime64[ns]")
    return (naive - origin) / np.timedelta64(1, "h")


class Coverage:
    """Which host identities reported in which hours of [start, end) and AROUND either side:
    an identity x hour matrix of booleans, so that a year of thousands of hosts stays small."""

    def __init__(self, start: datetime, end: datetime):
        self.hours = hour_range(start - AROUND, end + AROUND)
        self._origin = np.datetime64(self.hours[0].tz_convert(None), "ns")
        self._window = slice(NEIGHBOURS, len(self.hours) - NEIGHBOURS)
        self._rows: dict[tuple, int] = {}
        self._seen = np.zeros((64, len(self.hours)), dtype=bool)
        self._warnings: list[tuple[str, datetime, datetime]] = []

    def _row_of(self, identities: list[tuple]) -> np.ndarray:
        for identity in dict.fromkeys(identities):
            if identity not in self._rows:
                self._rows[identity] = len(self._rows)
        if len(self._rows) > len(self._seen):
            grown = np.zeros((2 * len(self._rows), len(self.hours)), dtype=bool)
            grown[: len(self._seen)] = self._seen
            self._seen = grown
        return np.fromiter(
            (self._rows[i] for i in identities), dtype=np.int64, count=len(identities)
        )

    def reported(self, frame: pd.DataFrame) -> None:
        """Host-hours (timestamp_utc, hostname, cloud_project_name, machine_name) in the record."""
        hosts = frame[frame["hostname"] != UNIDENTIFIED].drop_duplicates(
            ["timestamp_utc", *IDENTITY]
        )
        if hosts.empty:
            return
        hour = _hours_since(hosts["timestamp_utc"], self._origin).astype(np.int64)
        inside = (hour >= 0) & (hour < len(self.hours))
        hosts, hour = hosts[inside], hour[inside]
        # Each distinct identity looked up once (groups numbered in order of appearance).
        codes = hosts.groupby(IDENTITY, sort=False, dropna=False).ngroup().to_numpy()
        distinct = hosts[IDENTITY].drop_duplicates().itertuples(index=False, name=None)
        rows = self._row_of(list(distinct))  # may grow _seen
        self._seen[rows[codes], hour] = True

    def warned(self, warnings: list[str], start: datetime, end: datetime) -> None:
        """Prometheus said its answer for the hours [start, end) may be partial."""
        self._warnings.extend((w, start, end) for w in warnings)

    def gaps(self, holdings: pd.DataFrame) -> pd.DataFrame:
        """The gaps of the window, given the holdings (hostname, held_from, held_until; NaT
        until: still held) of the workspaces that overlap it. A host-hour held and missing
        is `held`, whatever its neighbours."""
        identities = list(self._rows)
        seen = self._seen[: len(identities)]
        hostnames = sorted({i[0] for i in identities} | set(holdings["hostname"].dropna()))
        host_row = {h: n for n, h in enumerate(hostnames)}
        id_host = np.array([host_row[i[0]] for i in identities], dtype=np.int64)
        reported = self._per_host(seen, id_host, len(hostnames))
        held = self._held(holdings, host_row) & ~reported
        between = self._between(seen) & ~reported[id_host] & ~held[id_host]
        window = self._window
        labels = self._latest_labels(identities, id_host, seen, len(hostnames))
        host_rows, host_cols = np.nonzero(held[:, window])
        held_gaps = pd.DataFrame(
            {
                "timestamp_utc": self.hours[window][host_cols],
                "hostname": np.array(hostnames, dtype=object)[host_rows],
                "cloud_project_name": [labels[r][0] for r in host_rows],
                "machine_name": [labels[r][1] for r in host_rows],
                "reason": HELD,
            }
        )
        rows, cols = np.nonzero(between[:, window])
        between_gaps = pd.DataFrame(
            {
                "timestamp_utc": self.hours[window][cols],
                "hostname": [identities[r][0] for r in rows],
                "cloud_project_name": [identities[r][1] for r in rows],
                "machine_name": [identities[r][2] for r in rows],
                "reason": BETWEEN,
            }
        ).drop_duplicates(["timestamp_utc", "hostname"])
        gaps = pd.concat([held_gaps, between_gaps, self._whole_hours(reported)], ignore_index=True)[
            GAP_COLUMNS
        ]
        return gaps.sort_values(["timestamp_utc", "hostname"], ignore_index=True)

    @staticmethod
    def _per_host(seen: np.ndarray, id_host: np.ndarray, n_hosts: int) -> np.ndarray:
        """Host x hour: reported under any of its identities."""
        reported = np.zeros((n_hosts, seen.shape[1]), dtype=bool)
        if len(id_host):
            order = np.argsort(id_host, kind="stable")
            hosts = id_host[order]
            starts = np.flatnonzero(np.r_[True, hosts[1:] != hosts[:-1]])
            reported[hosts[starts]] = np.logical_or.reduceat(seen[order], starts, axis=0)
        return reported

    def _between(self, seen: np.ndarray) -> np.ndarray:
        """Identity x hour: inside a silence of at most NEIGHBOURS hours between two reports
        (the hours between its previous and its next report)."""
        n_hours = len(self.hours)
        columns = np.arange(n_hours, dtype=np.int32)
        at_or_before = np.maximum.accumulate(np.where(seen, columns, -1), axis=1)
        at_or_after = np.minimum.accumulate(np.where(seen, columns, n_hours)[:, ::-1], axis=1)[
            :, ::-1
        ]
        previous = np.full_like(at_or_before, -1)
        previous[:, 1:] = at_or_before[:, :-1]
        following = np.full_like(at_or_after, n_hours)
        following[:, :-1] = at_or_after[:, 1:]
        return (previous >= 0) & (following < n_hours) & (following - previous <= NEIGHBOURS + 1)

    @staticmethod
    def _latest_labels(identities, id_host, seen, n_hosts) -> list[tuple]:
        """Per host, (project, machine) of its latest report; (None, None) if none."""
        last = np.where(seen.any(axis=1), seen.shape[1] - 1 - seen[:, ::-1].argmax(axis=1), -1)
        labels: list[tuple] = [(None, None)] * n_hosts
        best = np.full(n_hosts, -1)
        for row, (host, latest) in enumerate(zip(id_host, last, strict=True)):
            if latest > best[host]:
                best[host], labels[host] = latest, identities[row][1:]
        return labels

    def _held(self, holdings: pd.DataFrame, host_row: dict[str, int]) -> np.ndarray:
        """Host x hour: held by a workspace, each holding shortened by HOLDING_EDGE_TOLERANCE
        at both ends: +1 from the hour a holding begins in, -1 after the last it touches."""
        n_hours = len(self.hours)
        steps = np.zeros((len(host_row), n_hours + 1), dtype=np.int32)
        holdings = holdings[holdings["hostname"].notna()]
        if len(holdings):
            rows = np.fromiter(
                (host_row[h] for h in holdings["hostname"]), dtype=np.int64, count=len(holdings)
            )
            begin = np.floor(
                _hours_since(holdings["held_from"] + HOLDING_EDGE_TOLERANCE, self._origin)
            )
            stop = np.ceil(
                _hours_since(holdings["held_until"] - HOLDING_EDGE_TOLERANCE, self._origin)
            )
            stop = np.where(np.isnan(stop), n_hours, stop)
            begin, stop = np.clip(begin, 0, n_hours), np.clip(stop, 0, n_hours)
            valid = stop > begin
            np.add.at(steps, (rows[valid], begin[valid].astype(np.int64)), 1)
            np.add.at(steps, (rows[valid], stop[valid].astype(np.int64)), -1)
        return np.cumsum(steps, axis=1)[:, :-1] > 0

    def _whole_hours(self, reported: np.ndarray) -> pd.DataFrame:
        """The window's hours no host reported in, and those of answers with warnings."""
        window_hours = self.hours[self._window]
        whole: dict[pd.Timestamp, list[str]] = {}
        anyone = reported.any(axis=0)
        for hour in window_hours[~anyone[self._window]]:
            whole.setdefault(hour, []).append(NO_HOST)
        for warning, start, end in self._warnings:
            for hour in window_hours[(window_hours >= start) & (window_hours < end)]:
                whole.setdefault(hour, []).append(f"Prometheus warned: {warning}")
        return pd.DataFrame(
            {
                "timestamp_utc": pd.DatetimeIndex(list(whole), dtype=window_hours.dtype),
                "hostname": WHOLE_HOUR,
                "cloud_project_name": None,
                "machine_name": None,
                "reason": ["; ".join(r) for r in whole.values()],
            }
        )
