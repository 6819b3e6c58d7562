"""Prometheus: CPU seconds per host-hour from node_exporter's node_cpu_seconds_total."""

from __future__ import annotations

import re
from datetime import datetime

import dagster as dg
import numpy as np
import pandas as pd
import requests
from pydantic import Field

from carbon_pipeline.hosts import normalise_host
from carbon_pipeline.resources.http import retrying_session
from carbon_pipeline.secrets import mask_secrets, mask_url
from carbon_pipeline.times import HOUR, TIMESTAMP_DTYPE, utc_ns
from carbon_pipeline.timing import phase

# query_range answers at most 11,000 points per series; stay clear of it.
MAX_POINTS_PER_QUERY = 10_000
GROUP_LABELS = ("host", "instance", "cloud_project_name", "machine_name")
UNLABELLED = "(unlabelled)"

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
]

_EMPTY_DTYPES = {
    "timestamp_utc": TIMESTAMP_DTYPE,
    "hostname": object,
    "cloud_project_name": object,
    "machine_name": object,
    "cpu_count": "int64",
    "busy_cpu_seconds_total": "float64",
    "idle_cpu_seconds_total": "float64",
}


class PrometheusError(RuntimeError):
    """Prometheus could not answer a query; names the query and the hours it covered."""


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
    timeout_seconds: float = 300.0
    retries: int = 3
    backoff_seconds: float = 0.5

    def _selector(self, modes: list[str]) -> str:
        for name in self.label_matchers:
            if not _LABEL_NAME.match(name):
                raise PrometheusError(
                    f"label matcher name {name!r} is not a Prometheus label name "
                    "([a-zA-Z_][a-zA-Z0-9_]*); check PROMETHEUS_LABEL_MATCHERS"
                )
        matchers = [f"mode=~{promql_regex_alternatives(modes)}"]
        matchers += [f"{k}={promql_string(v)}" for k, v in sorted(self.label_matchers.items())]
        return "node_cpu_seconds_total{" + ", ".join(matchers) + "}"

    def queries(self) -> dict[str, str]:
        """The three PromQL queries, each evaluated at the end of every hour."""
        by = ", ".join(GROUP_LABELS)
        return {
            "busy": f"sum by ({by}) (increase({self._selector(self.busy_modes)}[1h]))",
            "idle": f"sum by ({by}) (increase({self._selector(self.idle_modes)}[1h]))",
            "cpus": f"count by ({by}) (increase({self._selector(['idle'])}[1h]))",
        }

    def query_range(
        self, query: str, start: datetime, end: datetime
    ) -> tuple[list[dict], list[str]]:
        """Evaluate `query` at every hour end in (start, end]: the hours [start, end). Returns
        the series and the warnings Prometheus gave with them (its answer may be partial)."""
        session = retrying_session(self.retries, self.backoff_seconds)
        url = self.prometheus_url.rstrip("/") + "/api/v1/query_range"
        shown = mask_url(url)
        params = {
            "query": query,
            "start": _iso(start + HOUR),
            "end": _iso(end),
            "step": "3600",
            "timeout": f"{int(self.timeout_seconds)}s",
        }
        where = f"for hours {_iso(start)} to {_iso(end)} (query: {query})"
        try:
            with phase("prometheus"):
                response = session.post(url, data=params, timeout=(10, self.timeout_seconds))
                body = response.json()
        except requests.JSONDecodeError as exc:
            raise PrometheusError(
                f"Prometheus at {shown} answered HTTP {response.status_code} with non-JSON {where}: "
                f"{response.text[:200]!r}"
            ) from exc
        except requests.RequestException as exc:
            raise PrometheusError(
                f"Prometheus at {shown} unreachable {where}: {mask_secrets(str(exc))}"
            ) from exc
        if (
            response.status_code != 200
            or not isinstance(body, dict)
            or body.get("status") != "success"
        ):
            detail = body.get("error") if isinstance(body, dict) else body
            raise PrometheusError(
                f"Prometheus answered HTTP {response.status_code} {where}: {detail}"
            )
        data = body.get("data")
        if not isinstance(data, dict) or data.get("resultType") != "matrix":
            raise PrometheusError(f"Prometheus answered an unexpected shape {where}: {data!r:.200}")
        warnings = body.get("warnings") or []
        return data["result"], [str(w) for w in warnings]

    def host_cpu_seconds(self, start: datetime, end: datetime) -> tuple[pd.DataFrame, list[str]]:
        """Busy and idle CPU seconds and cpu count per host-hour for the hours [start, end),
        and the warnings Prometheus gave (its answer may then be partial).

        Hosts are identified by their `host` label, else `instance`, normalised so that every
        form of one VM's name gives the same identity."""
        frames, warnings = {}, []
        for name, query in self.queries().items():
            parts = []
            chunk_start = start
            while chunk_start < end:
                chunk_end = min(end, chunk_start + MAX_POINTS_PER_QUERY * HOUR)
                result, said = self.query_range(query, chunk_start, chunk_end)
                warnings += [w for w in said if w not in warnings]
                with phase("transform"):
                    parts.append(_matrix_frame(result, query))
                chunk_start = chunk_end
            frames[name] = pd.concat(parts, ignore_index=True)
        with phase("transform"):
            return combine_host_cpu(frames["busy"], frames["idle"], frames["cpus"]), warnings


def _matrix_frame(result: list[dict], query: str) -> pd.DataFrame:
    """Long frame (timestamp_utc, hostname, cloud_project_name, machine_name, value)."""
    labels, counts, points = [], [], []
    for series in result:
        metric = series.get("metric", {})
        raw_host = metric.get("host") or metric.get("instance")
        if not raw_host:
            raise PrometheusError(
                f"a series has neither host nor instance label: {metric} ({query})"
            )
        labels.append(
            (
                normalise_host(raw_host),
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
    return pd.DataFrame(
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


_KEYS = ["timestamp_utc", "hostname", "cloud_project_name", "machine_name"]


def _sum_per_host(frame: pd.DataFrame) -> pd.Series:
    """Sum of `value` per key; NaN where any summed value was not finite."""
    finite = np.isfinite(frame["value"].to_numpy())
    sums = (
        frame.assign(value=frame["value"].where(finite, 0.0), bad=(~finite).astype(np.int64))
        .groupby(_KEYS, sort=False)[["value", "bad"]]
        .sum()
    )
    return sums["value"].where(sums["bad"] == 0)


def combine_host_cpu(busy: pd.DataFrame, idle: pd.DataFrame, cpus: pd.DataFrame) -> pd.DataFrame:
    """One row per (hour, host, project, machine), the raw forms of one host summed. A value
    Prometheus gave as NaN or infinite stays NaN (for the quality checks to reject); a host
    absent from one answer (no busy series, say) counts 0 there."""
    if busy.empty and idle.empty:
        return pd.DataFrame({c: pd.Series(dtype=_EMPTY_DTYPES[c]) for c in HOST_CPU_COLUMNS})
    parts = {
        "busy_cpu_seconds_total": _sum_per_host(busy),
        "idle_cpu_seconds_total": _sum_per_host(idle),
        "cpu_count": _sum_per_host(cpus),
    }
    index = parts["busy_cpu_seconds_total"].index
    for part in parts.values():
        index = index.union(part.index)
    combined = pd.DataFrame(
        {name: part.reindex(index, fill_value=0.0) for name, part in parts.items()}
    ).reset_index()
    combined["cpu_count"] = combined["cpu_count"].fillna(0).round().astype("int64")
    return combined.sort_values(_KEYS, ignore_index=True)[HOST_CPU_COLUMNS]
