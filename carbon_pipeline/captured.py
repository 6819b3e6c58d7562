"""Captured source data is the record: how a new answer from a source is merged into what the
warehouse already holds for a window.

Prometheus forgets (retention), the Carbon Intensity API goes down: the stored host-hours and
intensities are then the only copy. So a new answer only ever adds or corrects:
- a host-hour the answer has replaces the stored one (a corrected Prometheus), except that an
  implausible (quarantined) answer never replaces a plausible stored value, and an answer that
  may be partial (Prometheus warned, or fewer cpus than stored) never replaces a stored one;
- a host-hour with two label sets (relabelled mid-hour) is merged per label set;
- a host-hour stored but missing from the answer is kept;
- an hour's intensity is replaced only by one of the same or better provenance
  (actual > forecast > fallback; both half-hours > one).
`replace=True` takes the answer as it is (deliberate replacement of host-hours).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from carbon_pipeline.intensity import SOURCES

HOST_HOUR = ["timestamp_utc", "hostname"]
LABEL_SET = ["cloud_project_name", "machine_name"]
# The numbers of a host-hour compared when an answer meets the record; memory_gib is optional
# (NaN when a host exports no memory size).
_COMPARED_VALUES = [
    "cpu_count",
    "busy_cpu_seconds_total",
    "idle_cpu_seconds_total",
    "memory_gib",
]


@dataclass
class HostMerge:
    """What merging one answer did, in host-hours."""

    answered: int = 0  # host-hours in the answer (plausible or not)
    added: int = 0  # new plausible host-hours
    changed: int = 0  # stored plausible host-hours whose values the answer corrected
    kept_missing: int = 0  # stored host-hours the answer no longer has: kept
    kept_over_implausible: int = 0  # plausible stored values the answer gave as implausible
    kept_over_partial: int = 0  # stored host-hours kept over an answer that may be partial
    deleted: int = 0  # stored host-hours deleted because replacement was asked for

    def add(self, other: HostMerge) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


def _keys(frame: pd.DataFrame) -> pd.MultiIndex:
    return pd.MultiIndex.from_frame(frame[HOST_HOUR])


def count_changed(new: pd.DataFrame, old: pd.DataFrame) -> int:
    """How many host-hours differ between two versions of the same host-hours: a label set
    one has and the other not, or a number that changed. Numbers compare as numbers, and
    unknown (NaN) equals unknown, in any optional column."""
    key = [*HOST_HOUR, *LABEL_SET]
    values = [c for c in _COMPARED_VALUES if c in new or c in old]
    pairs = new.reindex(columns=[*key, *values]).merge(
        old.reindex(columns=[*key, *values]),
        on=key,
        how="outer",
        suffixes=("_new", "_old"),
        indicator=True,
    )
    differs = np.array(pairs["_merge"] != "both")
    for column in values:
        a = pairs[f"{column}_new"].to_numpy(dtype=float, na_value=np.nan)
        b = pairs[f"{column}_old"].to_numpy(dtype=float, na_value=np.nan)
        differs |= ~((a == b) | (np.isnan(a) & np.isnan(b)))
    return len(pairs.loc[differs, HOST_HOUR].drop_duplicates())


def merge_host_cpu(
    stored: pd.DataFrame,
    stored_rejected: pd.DataFrame,
    answered: pd.DataFrame,
    answered_rejected: pd.DataFrame,
    replace: bool = False,
    partial: bool = False,
) -> tuple[pd.DataFrame, pd.DataFrame, HostMerge]:
    """(plausible host-hours, quarantined host-hours, counts) to store for a window.

    Merged per series, a host-hour under one label set (a host relabelled mid-hour has two):
    an answered series replaces the stored series of the same label set, and the host-hour's
    other stored series are kept; an answer that gives a host-hour a label set the record
    lacks relabels it, replacing all its stored series. `partial` (Prometheus warned that its
    answer may be partial) keeps every stored host-hour as it is and only adds new ones; a
    series answered with fewer cpus than stored is partial too, and kept."""
    answer_keys = _keys(answered).union(_keys(answered_rejected))
    stored_keys = _keys(stored)
    counts = HostMerge(answered=len(answer_keys.unique()))
    all_stored = stored_keys.union(_keys(stored_rejected)).unique()
    if replace:
        counts.deleted = int((~all_stored.isin(answer_keys)).sum())
        counts.added = int((~_keys(answered).unique().isin(stored_keys)).sum())
        return answered, answered_rejected, counts
    # An implausible answer never replaces a plausible stored value.
    demoted = _keys(answered_rejected).isin(stored_keys)
    counts.kept_over_implausible = int(_keys(answered_rejected)[demoted].unique().size)
    answered_rejected = answered_rejected[~demoted]
    if partial:
        counts.kept_over_partial = int(_keys(answered).unique().isin(stored_keys).sum())
        answered = answered[~_keys(answered).isin(stored_keys)]
    else:
        answered, counts.kept_over_partial = _drop_fewer_cpus(answered, stored)
    answered = _keep_stored_memory(answered, stored)
    # Which stored series the answer replaces: those of its label sets, or all of a host-hour
    # it relabels.
    relabelled = _series(answered)[~_series(answered).isin(_series(stored))]
    relabelled_hours = relabelled.droplevel(LABEL_SET)
    replaced_series = _series(stored).isin(_series(answered)) | stored_keys.isin(relabelled_hours)
    replaced_rejected = _keys(stored_rejected).isin(_keys(answered).union(_keys(answered_rejected)))
    kept = stored[~replaced_series]
    counts.kept_missing = int((~all_stored.isin(answer_keys)).sum())
    answered_ok_keys = _keys(answered).unique()
    counts.added = int((~answered_ok_keys.isin(stored_keys)).sum())
    both = answered_ok_keys[answered_ok_keys.isin(stored_keys)]
    plausible = pd.concat([answered, kept], ignore_index=True).sort_values(
        [*HOST_HOUR, *LABEL_SET], ignore_index=True, kind="stable"
    )
    if len(both):
        counts.changed = count_changed(
            plausible[_keys(plausible).isin(both)], stored[stored_keys.isin(both)]
        )
    rejected = pd.concat(
        [answered_rejected, stored_rejected[~replaced_rejected]], ignore_index=True
    )
    return plausible, rejected, counts


def _series(frame: pd.DataFrame) -> pd.MultiIndex:
    return pd.MultiIndex.from_frame(frame[[*HOST_HOUR, *LABEL_SET]])


def _drop_fewer_cpus(answered: pd.DataFrame, stored: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """The answer without the series it gave fewer cpus than the record holds (a partial
    answer: some of the host's cpus had no samples), and how many host-hours that kept."""
    if stored.empty or answered.empty:
        return answered, 0
    key = [*HOST_HOUR, *LABEL_SET]
    cpus = answered[key].merge(stored[[*key, "cpu_count"]], on=key, how="left")["cpu_count"]
    fewer = answered["cpu_count"].to_numpy(dtype=float) < cpus.to_numpy(
        dtype=float, na_value=np.nan
    )
    kept = int(_keys(answered[fewer]).unique().size)
    return answered[~fewer], kept


def _keep_stored_memory(answered: pd.DataFrame, stored: pd.DataFrame) -> pd.DataFrame:
    if "memory_gib" not in answered or not answered["memory_gib"].isna().any() or stored.empty:
        return answered
    known = stored.dropna(subset=["memory_gib"]).drop_duplicates(HOST_HOUR, keep="last")
    fill = answered[HOST_HOUR].merge(known[[*HOST_HOUR, "memory_gib"]], on=HOST_HOUR, how="left")
    return answered.assign(
        memory_gib=answered["memory_gib"].fillna(
            pd.Series(fill["memory_gib"].to_numpy(), index=answered.index)
        )
    )


@dataclass
class IntensityMerge:
    """What merging one answer did, in hours."""

    upgraded: int = 0  # hours whose provenance improved (e.g. forecast -> actual)
    changed: int = 0  # hours of the same provenance whose value the answer corrected
    kept_better: int = 0  # hours whose stored provenance was better than the answer's: kept


def merge_intensity(
    stored: pd.DataFrame, answered: pd.DataFrame
) -> tuple[pd.DataFrame, IntensityMerge]:
    """The hours to store: each hour's answer, unless the stored hour has better provenance."""
    if stored.empty:
        return answered, IntensityMerge()
    old = stored.set_index("timestamp_utc").reindex(answered["timestamp_utc"])
    new_rank = provenance_rank(answered)
    old_rank = provenance_rank(old)  # NaN: nothing stored
    keep_old = old_rank < new_rank
    same = old_rank == new_rank
    differs = (
        old["intensity_gco2eq_per_kwh"].to_numpy()
        != answered["intensity_gco2eq_per_kwh"].to_numpy()
    )
    counts = IntensityMerge(
        upgraded=int((old_rank > new_rank).sum()),
        changed=int((same & differs).sum()),
        kept_better=int(keep_old.sum()),
    )
    kept = old[keep_old].reset_index()
    merged = pd.concat([answered[~keep_old], kept[answered.columns]], ignore_index=True)
    merged = merged.astype(answered.dtypes.to_dict())
    return merged.sort_values("timestamp_utc", ignore_index=True), counts


def describe_host_merge(counts: HostMerge) -> list[str]:
    """Sentences for the run log about what merging kept or changed (empty if nothing to say)."""
    said = []
    if counts.kept_missing:
        said.append(
            f"{counts.kept_missing} stored host-hour(s) are missing from Prometheus' answer "
            "and were kept (its retention may have dropped them, or a host stopped reporting); "
            "to replace them deliberately, run with the tag carbon-pipeline/replace-sources=true "
            "(carbon-pipeline backfill --replace-sources)"
        )
    if counts.kept_over_implausible:
        said.append(
            f"{counts.kept_over_implausible} stored host-hour(s) were answered with impossible "
            "numbers this time; their plausible stored values were kept"
        )
    if counts.kept_over_partial:
        said.append(
            f"{counts.kept_over_partial} stored host-hour(s) were kept over an answer that may "
            "be partial (Prometheus warned, or gave fewer cpus than stored)"
        )
    if counts.changed:
        said.append(f"{counts.changed} stored host-hour(s) changed value in the answer: replaced")
    if counts.deleted:
        said.append(
            f"{counts.deleted} stored host-hour(s) not in the answer were deleted, as asked "
            "(replace-sources)"
        )
    return said


def provenance_rank(hours: pd.DataFrame) -> np.ndarray:
    """How good each hour's intensity is, lower is better: actual before forecast before
    fallback, and within each, an hour with both its half-hours before one with only one.
    NaN where there is no hour."""
    source = hours["intensity_source"].map({s: n for n, s in enumerate(SOURCES)})
    periods = hours["period_count"] if "period_count" in hours else pd.Series(2, index=hours.index)
    missing_periods = (2 - periods.clip(upper=2)).where(hours["intensity_source"] != "fallback", 0)
    return (3 * source + missing_periods).to_numpy(dtype=float)
