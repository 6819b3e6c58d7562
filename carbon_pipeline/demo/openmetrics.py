"""Counter history as an OpenMetrics file for `promtool tsdb create-blocks-from openmetrics`:
times in seconds, samples ascending within each series, `# EOF` at the end."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TextIO

import numpy as np


def label_value(value: str) -> str:
    """An OpenMetrics label value, quoted and escaped."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def series_name(metric: str, labels: dict[str, str]) -> str:
    body = ",".join(f"{k}={label_value(v)}" for k, v in labels.items())
    return f"{metric}{{{body}}}"


def write_family(
    out: TextIO,
    metric: str,
    series: Iterable[tuple[dict[str, str], np.ndarray, np.ndarray]],
    kind: str = "counter",
) -> int:
    """Write one metric family (a counter or a gauge): (labels, times in whole seconds,
    values) per series. Returns the number of samples written. The caller writes `# EOF`
    once at the end."""
    family = metric.removesuffix("_total") if kind == "counter" else metric
    out.write(f"# HELP {family} {metric}.\n# TYPE {family} {kind}\n")
    samples = 0
    for labels, times, values in series:
        if len(times) and np.any(np.diff(times) <= 0):
            raise ValueError(f"samples of {labels} are not strictly ascending in time")
        name = series_name(metric, labels)
        pairs = zip(times.tolist(), values.tolist(), strict=True)
        if np.isfinite(values).all():  # repr() of a float is its shortest exact spelling
            out.write("".join(f"{name} {v!r} {t}\n" for t, v in pairs))
        else:
            out.write("".join(f"{name} {_number(v)} {t}\n" for t, v in pairs))
        samples += len(times)
    return samples


def _number(value: float) -> str:
    """OpenMetrics spelling of a sample value: NaN, +Inf and -Inf for the non-finite ones."""
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


def write_eof(out: TextIO) -> None:
    out.write("# EOF\n")
