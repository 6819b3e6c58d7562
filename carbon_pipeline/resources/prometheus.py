"""Prometheus: CPU seconds per host-hour from node_exporter's node_cpu_seconds_total."""

from __future__ import annotations

import re
from datetime import datetime
from typing import NamedTuple

import dagster as dg
import numpy as np
import pandas as pd
import requests
from pydantic import Field, PrivateAttr

from carbon_pipeline.config import ConfigError
from carbon_pipeline.hosts import normalise_host
from carbon_pipeline.resources.http import Budget, decoded_json, request_within
from carbon_pipeline.secrets import mask_secrets, mask_url
from carbon_pipeline.times import HOUR, TIMESTAMP_DTYPE, utc_ns
from carbon_pipeline.timing import phase

# query_range answers at most 11,000 points per series; stay clear of it.
MAX_POINTS_PER_QUERY = 10_000
HOST_LABELS = ("host", "instance", "cloud_project_name", "machine_name")
UNLABELLED = "(unlabelled)"
# The host of series that carry neither a host nor an instance label: always quarantined.
UNIDENTIFIED = "(no host label)"

BUSY_MODES = ["user", "system", "nice", "irq", "softirq", "steal"]
IDLE_MODES = ["idle", "iowait"]

HOST_CPU_COLUMNS = [
    "timestamp_utc",
    "hostname",
    "cloud_project_name",
    "machine_name",
    "cpu_count",
    "busy_cpu_seconds_total",
    "idle_cpu_seconds_total",
    "memory_gib",
]

_EMPTY_DTYPES = {
    "timestamp_utc": TIMESTAMP_DTYPE,
    "hostname": object,
    "cloud_project_name": object,
    "machine_name": object,
    "cpu_count": "int64",
    "busy_cpu_seconds_total": "float64",
    "idle_cpu_seconds_total": "float64",
    "memory_gib": "float64",
}
BYTES_PER_GIB = 2**30


class HostCpuAnswer(NamedTuple):
    """What Prometheus said about a window's host-hours."""

    frame: pd.DataFrame
    warnings: list[str]  # Prometheus' own: its answer may be partial
    notes: list[str]  # ours: what was odd in the answer


class PrometheusError(RuntimeError):
    """Prometheus could not answer a query; names the query and the hours it covered."""


class PrometheusTooLarge(PrometheusError):
    """Prometheus refused a query for its size (--query.max-samples): ask for fewer hours."""


def promql_string(value: str) -> str:
    """A PromQL double-quoted string literal holding exactly `value`."""
    escaped = (
        value.replace("\\", "\\\\")
        .replace('"', '\\"')
        .replace("\n", "\\n")
        .replace("\r", "\\r")
        .replace("\t", "\\t")
    )
    return f'"{escaped}"'


_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_RE2_SPECIAL = set("\\.+*?()|[]{}^$")


def promql_regex_alternatives(values: list[str]) -> str:
    """A PromQL string literal for a regex matching exactly one of `values`."""
    parts = ["".join("\\" + c if c in _RE2_SPECIAL else c for c in v) for v in values]
    return promql_string("|".join(parts))


def _check_label_names(names, setting: str) -> None:
    for name in names:
        if not _LABEL_NAME.match(name):
            raise ConfigError(
                f"label name {name!r} is not a Prometheus label name "
                f"([a-zA-Z_][a-zA-Z0-9_]*); check {setting}"
            )


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


class PrometheusResource(dg.ConfigurableResource):
    """The Prometheus HTTP API that scrapes node_exporter on every workspace host."""

    prometheus_url: str
    busy_modes: list[str] = Field(default=BUSY_MODES, description="Modes counted as busy.")
    idle_modes: list[str] = Field(default=IDLE_MODES, description="Modes counted as idle.")
    label_matchers: dict[str, str] = Field(
        default={},
        description="Extra equality matchers on node_cpu_seconds_total, e.g. {'job': 'node'}.",
    )
    scrape_labels: list[str] = Field(
        default=["job"],
        description="Labels that tell two scrapes of one host apart (kept apart in the "
        "queries, then one kept per host): a host scraped twice is counted once.",
    )
    timeout_seconds: float = Field(
        default=120.0,
        description="Longest a query may take, all its attempts together [s].",
    )
    run_timeout_seconds: float = Field(
        default=3600.0, description="Longest a run may spend asking Prometheus, all queries [s]."
    )
    max_wait_seconds: float = Field(
        default=60.0, description="Longest wait before a retry, Retry-After included [s]."
    )
    retries: int = 3
    backoff_seconds: float = 0.5
    _budget: Budget = PrivateAttr(default_factory=Budget)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._budget.start(self.run_timeout_seconds)

    def _selector(self, modes: list[str] | None, metric: str = "node_cpu_seconds_total") -> str:
        _check_label_names(self.label_matchers, "PROMETHEUS_LABEL_MATCHERS")
        matchers = [f"mode=~{promql_regex_alternatives(modes)}"] if modes else []
        matchers += [f"{k}={promql_string(v)}" for k, v in sorted(self.label_matchers.items())]
        return metric + "{" + ", ".join(matchers) + "}"

    def queries(self) -> dict[str, str]:
        """The four PromQL queries, each evaluated at the end of every hour: busy and idle CPU
        seconds, cpus, and the memory's mean size over the hour. Series are kept apart by the
        scrape labels too (job, by default), so that a host scraped twice gives two series
        with the same counters rather than one with them added: one is kept per host later."""
        _check_label_names(self.scrape_labels, "PROMETHEUS_SCRAPE_LABELS")
        by = ", ".join(dict.fromkeys([*HOST_LABELS, *self.scrape_labels]))

        def increase(modes: list[str]) -> str:
            return f"increase({self._selector(modes)}[1h])"

        memory = f"avg_over_time({self._selector(None, 'node_memory_MemTotal_bytes')}[1h])"
        return {
            "busy": f"sum by ({by}) ({increase(self.busy_modes)})",
            "idle": f"sum by ({by}) ({increase(self.idle_modes)})",
            "cpus": f"count by ({by}) ({increase(['idle'])})",
            "memory": f"max by ({by}) ({memory})",
        }

    def query_range(
        self, query: str, start: datetime, end: datetime, step_hours: int = 1
    ) -> tuple[list[dict], list[str]]:
        """Evaluate `query` at every hour end in (start, end]: the hours [start, end) (or
        every `step_hours`). Returns the series and the warnings Prometheus gave with them
        (its answer may be partial)."""
        url = self.prometheus_url.rstrip("/") + "/api/v1/query_range"
        shown = mask_url(url)
        where = f"for hours {_iso(start)} to {_iso(end)} (query: {query})"
        # The time budget is shared by every attempt: a hung Prometheus costs at most it.
        try:
            seconds = self._budget.call_seconds(self.timeout_seconds, f"Prometheus at {shown}")
        except requests.Timeout as exc:
            raise PrometheusError(f"{exc}; {where}") from exc
        attempts = self.retries + 1
        per_attempt = max(1.0, seconds / attempts)
        params = {
            "query": query,
            "start": _iso(start + step_hours * HOUR),
            "end": _iso(end),
            "step": str(3600 * step_hours),
            "timeout": f"{int(per_attempt)}s",
        }
        try:
            with phase("prometheus"):
                response = request_within(
                    "POST",
                    url,
                    seconds,
                    retries=self.retries,
                    backoff_seconds=self.backoff_seconds,
                    max_wait_seconds=self.max_wait_seconds,
                    data=params,
                )
                body = decoded_json(response)
        except requests.JSONDecodeError as exc:
            raise PrometheusError(
                f"Prometheus at {shown} answered HTTP {response.status_code} with non-JSON {where}: "
                f"{response.text[:200]!r}"
            ) from exc
        except requests.RequestException as exc:
            if isinstance(exc, requests.Timeout) or "timed out" in str(exc):
                raise PrometheusError(
                    f"Prometheus at {shown} gave no complete answer in {seconds:.0f} s "
                    f"({attempts} attempt(s) of at most {per_attempt:.0f} s; "
                    f"{mask_secrets(str(exc))}) {where}"
                ) from exc
            raise PrometheusError(
                f"Prometheus at {shown} unreachable {where}: {mask_secrets(str(exc))}"
            ) from exc
        if (
            response.status_code != 200
            or not isinstance(body, dict)
            or body.get("status") != "success"
        ):
            detail = body.get("error") if isinstance(body, dict) else body
            kind = PrometheusTooLarge if "too many samples" in str(detail) else PrometheusError
            raise kind(f"Prometheus answered HTTP {response.status_code} {where}: {detail}")
        data = body.get("data")
        if not isinstance(data, dict) or data.get("resultType") != "matrix":
            raise PrometheusError(f"Prometheus answered an unexpected shape {where}: {data!r:.200}")
        warnings = body.get("warnings") or []
        return data["result"], [str(w) for w in warnings]

    def query_range_in_parts(
        self, query: str, start: datetime, end: datetime
    ) -> tuple[list[dict], list[str]]:
        """query_range, asked again in halves of the hours if Prometheus refuses it for its
        size, down to single hours."""
        try:
            return self.query_range(query, start, end)
        except PrometheusTooLarge:
            hours = int((end - start) / HOUR)
            if hours <= 1:
                raise
            middle = start + (hours // 2) * HOUR
            first, first_said = self.query_range_in_parts(query, start, middle)
            second, second_said = self.query_range_in_parts(query, middle, end)
            return first + second, first_said + [w for w in second_said if w not in first_said]

    def count_hosts(self, start: datetime, end: datetime) -> int:
        """The most hosts reporting at once in [start, end), sampled at most 25 times: what
        the chunks of a window are sized by."""
        step_hours = max(1, int((end - start) / HOUR) // 24)
        query = f"count(group by (host, instance) ({self._selector(['idle'])}))"
        result, _ = self.query_range(query, start, end, step_hours=step_hours)
        values = [float(v) for series in result for _, v in series.get("values", [])]
        return int(max(values, default=0))

    def host_cpu_seconds(self, start: datetime, end: datetime) -> HostCpuAnswer:
        """Busy and idle CPU seconds and cpu count per host-hour for the hours [start, end),
        the warnings Prometheus gave (its answer may then be partial), and notes on what was
        odd in it (hosts scraped twice, series without a host).

        Hosts are identified by their `host` label, else `instance`, normalised so that every
        form of one VM's name gives the same identity. A series with neither label is kept
        under the host UNIDENTIFIED, which the quality checks quarantine."""
        frames, warnings, unidentified = {}, [], set()
        for name, query in self.queries().items():
            parts = []
            chunk_start = start
            while chunk_start < end:
                chunk_end = min(end, chunk_start + MAX_POINTS_PER_QUERY * HOUR)
                result, said = self.query_range_in_parts(query, chunk_start, chunk_end)
                warnings += [w for w in said if w not in warnings]
                with phase("transform"):
                    frame, nameless = _matrix_frame(result)
                    parts.append(frame)
                    unidentified.update(nameless)
                chunk_start = chunk_end
            frames[name] = pd.concat(parts, ignore_index=True)
        with phase("transform"):
            combined, duplicated = combine_host_cpu(
                frames["busy"], frames["idle"], frames["cpus"], frames["memory"]
            )
        notes = [
            f"a series without a host or instance label ({labels}) is quarantined under "
            f"{UNIDENTIFIED}"
            for labels in sorted(unidentified)
        ]
        if duplicated:
            notes.append(
                f"{duplicated} host-hour(s) came from more than one series (a host scraped "
                "twice, or under two names): counted once"
            )
        return HostCpuAnswer(combined, warnings, notes)


def _matrix_frame(result: list[dict]) -> tuple[pd.DataFrame, set[str]]:
    """Long frame (timestamp_utc, hostname, cloud_project_name, machine_name, value), and the
    label sets of the series that name no host."""
    labels, counts, points, nameless = [], [], [], set()
    for series in result:
        metric = series.get("metric", {})
        raw_host = (metric.get("host") or metric.get("instance") or "").strip()
        if not raw_host:
            nameless.add(", ".join(f"{k}={v!r}" for k, v in sorted(metric.items())) or "no labels")
        labels.append(
            (
                normalise_host(raw_host) if raw_host else UNIDENTIFIED,
                metric.get("cloud_project_name") or UNLABELLED,
                metric.get("machine_name") or UNLABELLED,
            )
        )
        values = series.get("values", [])
        counts.append(len(values))
        points.extend(values)
    # [time, "value"] pairs to two float columns in C ("NaN" and "+Inf" parse too).
    pairs = np.array(points, dtype=object).reshape(-1, 2)
    series_of_row = np.repeat(np.arange(len(labels)), counts)
    names = np.array(labels, dtype=object).reshape(-1, 3)[series_of_row]
    frame = pd.DataFrame(
        {
            # Evaluated at the hour's end; the fact is stamped with the hour's start.
            "timestamp_utc": utc_ns(
                pd.to_datetime(pairs[:, 0].astype(np.float64) - 3600, unit="s", utc=True)
            ),
            "hostname": pd.Series(names[:, 0], dtype=object),
            "cloud_project_name": pd.Series(names[:, 1], dtype=object),
            "machine_name": pd.Series(names[:, 2], dtype=object),
            "value": pairs[:, 1].astype(np.float64),
        }
    )
    return frame, nameless


_KEYS = ["timestamp_utc", "hostname", "cloud_project_name", "machine_name"]


def _one_per_host(frame: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """`value` per key, taking the largest where several series give one (the same VM
    scraped twice or under two names: the same counters, never to be added); NaN where any
    value was not finite. Also how many series each key had."""
    finite = np.isfinite(frame["value"].to_numpy())
    grouped = frame.assign(
        value=frame["value"].where(finite, -np.inf), bad=(~finite).astype(np.int64)
    ).groupby(_KEYS, sort=False)
    values = grouped["value"].max().where(grouped["bad"].sum() == 0)
    return values, grouped.size()


def combine_host_cpu(
    busy: pd.DataFrame, idle: pd.DataFrame, cpus: pd.DataFrame, memory: pd.DataFrame
) -> tuple[pd.DataFrame, int]:
    """One row per (hour, host, project, machine), and how many host-hours several series
    gave (counted once). A value Prometheus gave as NaN or infinite stays NaN (for the
    quality checks to reject); a host absent from one CPU answer (no busy series, say) counts
    0 there; a host without a memory series has its memory unknown (NaN)."""
    if busy.empty and idle.empty:
        empty = pd.DataFrame({c: pd.Series(dtype=_EMPTY_DTYPES[c]) for c in HOST_CPU_COLUMNS})
        return empty, 0
    (busy_values, busy_series), (idle_values, idle_series) = (
        _one_per_host(busy),
        _one_per_host(idle),
    )
    cpu_values, cpu_series = _one_per_host(cpus)
    # Scraped twice (by two jobs, or under two names): several series for one host-hour.
    series = pd.concat([busy_series, idle_series, cpu_series], axis=1).max(axis=1)
    duplicated = int((series > 1).sum())
    parts = {
        "busy_cpu_seconds_total": busy_values,
        "idle_cpu_seconds_total": idle_values,
        "cpu_count": cpu_values,
    }
    index = parts["busy_cpu_seconds_total"].index
    for part in parts.values():
        index = index.union(part.index)
    combined = pd.DataFrame(
        {name: part.reindex(index, fill_value=0.0) for name, part in parts.items()}
    ).reset_index()
    combined["cpu_count"] = combined["cpu_count"].fillna(0).round().astype("int64")
    combined["memory_gib"] = np.nan
    if len(memory):
        memory_bytes, _ = _one_per_host(memory)
        keys = pd.MultiIndex.from_frame(combined[_KEYS])
        combined["memory_gib"] = memory_bytes.reindex(keys).to_numpy() / BYTES_PER_GIB
    return combined.sort_values(_KEYS, ignore_index=True)[HOST_CPU_COLUMNS], duplicated
