"""The pure arithmetic of each stage, on hand-made inputs with hand-computed answers."""

from __future__ import annotations

import gc
import threading
import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
import requests

from carbon_pipeline.ahead import asked_ahead
from carbon_pipeline.attribution import holding_intervals, hourly_shares
from carbon_pipeline.hosts import normalise_host
from carbon_pipeline.intensity import MissingIntensityError, hourly_intensity
from carbon_pipeline.resources.http import decoded_json
from carbon_pipeline.resources.power_model import PowerModelError, PowerModelResource
from carbon_pipeline.resources.prometheus import promql_regex_alternatives, promql_string
from carbon_pipeline.times import utc_ns

T0 = datetime(2025, 3, 3, tzinfo=UTC)


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


@pytest.mark.parametrize(
    "raw",
    [
        "172.16.100.50",
        "172.16.100.50:9100",
        "host-172-16-100-50",
        "host-172-16-100-50.nubes.stfc.ac.uk",
        "host-172-16-100-50.nubes.stfc.ac.uk:9100",
        " HOST-172-16-100-50.Nubes.STFC.ac.uk:9100 ",
    ],
)
def test_every_form_of_a_host_has_one_identity(raw):
    assert normalise_host(raw) == "172.16.100.50"


def test_names_without_an_address_keep_their_name():
    assert normalise_host("gpu-node-7.example.org:9100") == "gpu-node-7.example.org"
    assert normalise_host("[fd00::5]:9100") == "fd00::5"
    with pytest.raises(ValueError, match="empty"):
        normalise_host("  ")


def _answer(body: bytes) -> requests.Response:
    response = requests.Response()
    response.status_code, response._content = 200, body
    return response


def test_json_is_decoded_with_the_collector_paused_and_given_back_as_it_was():
    body = b'{"data": {"result": [{"values": [[1740787200, "3600.5"]]}]}}'
    assert gc.isenabled()
    assert decoded_json(_answer(body)) == {
        "data": {"result": [{"values": [[1740787200, "3600.5"]]}]}
    }
    assert gc.isenabled()
    with pytest.raises(requests.JSONDecodeError):
        decoded_json(_answer(b"<html>proxy error</html>"))
    assert gc.isenabled()
    gc.disable()  # a caller that paused it itself finds it still paused
    try:
        decoded_json(_answer(b"[]"))
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_promql_strings_escape_quotes_backslashes_and_newlines():
    assert promql_string('a"b\\c\nd ünï') == '"a\\"b\\\\c\\nd ünï"'
    assert promql_regex_alternatives(["user", "a.b|c"]) == '"user|a\\\\.b\\\\|c"'


def periods(rows):
    frame = pd.DataFrame(rows, columns=["period_from", "forecast", "actual"])
    frame["period_from"] = utc_ns(frame["period_from"])
    frame["period_to"] = frame["period_from"] + pd.Timedelta(minutes=30)
    return frame


def test_hourly_intensity_means_periods_and_keeps_provenance():
    frame = periods(
        [
            (at(0), 100.0, 110.0),
            (at(0.5), 120.0, 130.0),  # hour 0: actuals 110, 130 -> 120, actual
            (at(1), 200.0, np.nan),  # null actual: forecast 200
            (at(1.5), 220.0, 210.0),  # hour 1: (200 + 210) / 2 = 205, forecast
            (at(2), 150.0, 0.0),  # glitch: actual 0 while forecast 150 -> 150
            (at(2.5), 160.0, 158.0),  # hour 2: (150 + 158) / 2 = 154, forecast
            (at(3), 90.0, 94.0),  # hour 3 has one period only: 94, actual
        ]
    )
    hours = hourly_intensity(frame, at(0), at(5))
    assert hours["intensity_gco2eq_per_kwh"].tolist() == [120.0, 205.0, 154.0, 94.0, 200.0]
    assert hours["intensity_source"].tolist() == [
        "actual",
        "forecast",
        "forecast",
        "actual",
        "fallback",
    ]
    assert hours["period_count"].tolist() == [2, 2, 2, 1, 0]
    assert hours["glitch_periods"].tolist() == [0, 0, 1, 0, 0]
    assert hours["actual_gco2eq_per_kwh"].iloc[0] == 120.0
    with pytest.raises(MissingIntensityError, match="1 hour.*2025-03-03T04:00Z"):
        hourly_intensity(frame, at(0), at(5), on_missing="fail")


def workspaces(rows):
    frame = pd.DataFrame(
        rows, columns=["hostname", "owner", "created_time", "acquired_time", "deleted_time"]
    )
    for column in ("created_time", "acquired_time", "deleted_time"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    frame.insert(0, "workspace_id", [f"ws{n}" for n in range(len(frame))])
    return frame


def shares_of(rows, start=T0, end=T0 + timedelta(hours=3)):
    result = hourly_shares(holding_intervals(workspaces(rows)), start, end)
    return {(r.timestamp_utc.hour, r.ext_user_id): r.share for r in result.itertuples()}


def test_shares_follow_holding_time():
    got = shares_of(
        [
            ("host-10-0-0-1.nubes:9100", "ann", at(-5), None, at(1 + 20 / 60)),
            ("10.0.0.1", "ben", at(1), at(1 + 20 / 60), None),  # acquired after created
        ]
    )
    assert got == pytest.approx(
        {(0, "ann"): 1.0, (1, "ann"): 1 / 3, (1, "ben"): 2 / 3, (2, "ben"): 1.0}
    )


def test_overlapping_workspaces_never_exceed_the_hour():
    got = shares_of(
        [
            ("10.0.0.1", "ann", at(0), None, at(1)),
            ("10.0.0.1", "ben", at(0.5), None, at(1)),
        ],
        end=at(1),
    )
    # 60 + 30 minutes held in a 60-minute hour: scaled to 2/3 and 1/3.
    assert got == pytest.approx({(0, "ann"): 2 / 3, (0, "ben"): 1 / 3})


def test_overlaps_share_the_held_time_and_leave_the_rest_unattributed():
    got = shares_of(
        [
            ("10.0.0.1", "ann", at(0), None, at(0.5)),
            ("10.0.0.1", "ben", at(0), None, at(0.5)),
            ("10.0.0.2", "cat", at(0), None, at(0.5)),
            ("10.0.0.2", "dan", at(0.25), None, at(0.75)),
        ],
        end=at(1),
    )
    # .1: both held the first half only; .2: held 00:00-00:45 by someone (30 + 30 minutes).
    assert got == pytest.approx(
        {(0, "ann"): 0.25, (0, "ben"): 0.25, (0, "cat"): 0.375, (0, "dan"): 0.375}
    )


def test_inverted_and_ownerless_workspaces():
    got = shares_of(
        [
            ("10.0.0.1", "ann", at(2), None, at(1)),  # deleted before created: holds nothing
            ("10.0.0.2", None, at(0), None, at(0.5)),  # no owner: unattributed
        ]
    )
    assert got == {(0, "unattributed"): 0.5}


def test_power_model_file_overrides_and_rejects_bad_values(tmp_path):
    good = tmp_path / "power.csv"
    good.write_text("machine_name,busy_watts_per_core,idle_watts_per_core\nMuon,10,0.5\n")
    model = PowerModelResource(overrides_file=str(good)).model_for(pd.Series(["Muon", "SANS"]))
    assert model.to_dict("list") == {
        "busy_watts_per_core": [10.0, 12.0],
        "idle_watts_per_core": [0.5, 1.0],
        "memory_watts_per_gib": [0.3725, 0.3725],
        "embodied_kgco2e": [1000.0, 1000.0],
        "lifetime_years": [4.0, 4.0],
        "server_threads": [64.0, 64.0],
    }
    # The footprint's factors may follow, in any order; an empty cell takes the default.
    full = tmp_path / "full.csv"
    full.write_text(
        "machine_name,busy_watts_per_core,idle_watts_per_core,server_threads,memory_watts_per_gib\n"
        "Muon,10,0.5,128,\nSANS,12,1,,0.5\n"
    )
    model = PowerModelResource(overrides_file=str(full)).model_for(pd.Series(["SANS", "Muon"]))
    assert model["server_threads"].tolist() == [64.0, 128.0]
    assert model["memory_watts_per_gib"].tolist() == [0.5, 0.3725]
    for content, message in (
        ("Muon,-3,1", "line 2 busy_watts_per_core.*-3"),
        ("Muon,,1", "line 2 busy_watts_per_core"),
    ):
        bad = tmp_path / "bad.csv"
        bad.write_text("machine_name,busy_watts_per_core,idle_watts_per_core\n" + content + "\n")
        with pytest.raises(PowerModelError, match=message):
            PowerModelResource(overrides_file=str(bad)).model_for(pd.Series(["Muon"]))
    zero = tmp_path / "zero.csv"
    zero.write_text(
        "machine_name,busy_watts_per_core,idle_watts_per_core,lifetime_years\nMuon,1,1,0\n"
    )
    with pytest.raises(PowerModelError, match="line 2 lifetime_years must be a finite, positive"):
        PowerModelResource(overrides_file=str(zero)).model_for(pd.Series(["Muon"]))
    unknown = tmp_path / "unknown.csv"
    unknown.write_text("machine_name,busy_watts_per_core,idle_watts_per_core,gpus\nMuon,1,1,2\n")
    with pytest.raises(PowerModelError, match="then any of memory_watts_per_gib"):
        PowerModelResource(overrides_file=str(unknown)).model_for(pd.Series(["Muon"]))
    with pytest.raises(PowerModelError, match="CARBON_IDLE_WATTS_PER_CORE"):
        PowerModelResource(idle_watts_per_core=-1).model_for(pd.Series(["Muon"]))


# ---- the record: merging answers, finding gaps ------------------------------------------


def host_hours(rows, rejected: bool = False) -> pd.DataFrame:
    columns = [
        "timestamp_utc",
        "hostname",
        "cloud_project_name",
        "machine_name",
        "cpu_count",
        "busy_cpu_seconds_total",
        "idle_cpu_seconds_total",
    ]
    frame = pd.DataFrame(rows, columns=columns + (["reason"] if rejected else []))
    frame["timestamp_utc"] = utc_ns(frame["timestamp_utc"])
    return frame


def test_a_new_answer_adds_and_corrects_but_never_takes_away():
    from carbon_pipeline.captured import merge_host_cpu

    stored = host_hours(
        [
            (at(0), "a", "P", "M", 2, 100.0, 200.0),
            (at(0), "b", "P", "M", 2, 10.0, 20.0),
            (at(1), "a", "P", "M", 2, 1.0, 2.0),
            (at(1), "gone", "P", "M", 1, 5.0, 5.0),
        ]
    )
    stored_rejected = host_hours([(at(1), "bad", "P", "M", 1, -1.0, 5.0, "negative")], True)
    answer = host_hours(
        [
            (at(0), "a", "P", "M", 2, 100.0, 200.0),  # the same
            (at(0), "b", "P", "M", 2, 11.0, 20.0),  # corrected
            (at(1), "c", "P", "M", 1, 5.0, 5.0),  # new
            (at(1), "bad", "P", "M", 1, 1.0, 5.0),  # now plausible
        ]
    )
    answer_rejected = host_hours([(at(1), "a", "P", "M", 2, np.nan, 2.0, "NaN")], True)
    kept, rejected, counts = merge_host_cpu(stored, stored_rejected, answer, answer_rejected)
    got = {(r.timestamp_utc, r.hostname): r.busy_cpu_seconds_total for r in kept.itertuples()}
    assert got == {
        (pd.Timestamp(at(0)), "a"): 100.0,
        (pd.Timestamp(at(0)), "b"): 11.0,
        (pd.Timestamp(at(1)), "a"): 1.0,  # a plausible value outlives an implausible answer
        (pd.Timestamp(at(1)), "gone"): 5.0,  # kept though the answer no longer has it
        (pd.Timestamp(at(1)), "c"): 5.0,
        (pd.Timestamp(at(1)), "bad"): 1.0,
    }
    assert rejected.empty
    assert (counts.answered, counts.added, counts.changed) == (5, 2, 1)
    assert (counts.kept_missing, counts.kept_over_implausible, counts.deleted) == (1, 1, 0)

    kept, rejected, counts = merge_host_cpu(
        stored, stored_rejected, answer, answer_rejected, replace=True
    )
    assert len(kept) == 4 and len(rejected) == 1 and counts.deleted == 1
    # A memory size the answer lacks is kept from the record; one it has replaces it.
    stored = stored.assign(memory_gib=[8.0, 8.0, 8.0, 8.0])
    answer = answer.assign(memory_gib=[float("nan"), 16.0, 4.0, 2.0])
    kept, _, counts = merge_host_cpu(stored, stored_rejected, answer, answer_rejected)
    memory = {(r.timestamp_utc.hour, r.hostname): r.memory_gib for r in kept.itertuples()}
    assert memory[(0, "a")] == 8.0 and memory[(0, "b")] == 16.0 and memory[(1, "gone")] == 8.0
    assert counts.changed == 1  # b (and its memory); a is unchanged


def test_an_answer_meets_the_record_as_numbers_with_unknowns_in_any_optional_column():
    """Re-running stored host-hours of hosts without a memory size (NaN stored and NaN
    answered) compares numbers, never text: unknown equals unknown, and only real changes
    count (pandas 3 keeps NaN a float under astype(str), which broke a text comparison)."""
    from carbon_pipeline.captured import count_changed, merge_host_cpu

    stored = host_hours(
        [
            (at(0), "a", "P", "M", 2, 100.0, 200.0),
            (at(0), "b", "P", "M", 2, 10.0, 20.0),
            (at(1), "a", "P", "M", 2, 1.0, 2.0),
            (at(1), "c", "P", "M", 1, 3.0, 4.0),
        ]
    ).assign(memory_gib=[np.nan, 8.0, np.nan, np.nan])
    same = stored.copy()
    kept, rejected, counts = merge_host_cpu(stored, stored.iloc[:0], same, same.iloc[:0])
    assert (counts.added, counts.changed, counts.kept_missing) == (0, 0, 0)
    pd.testing.assert_frame_equal(
        kept, stored.sort_values(["timestamp_utc", "hostname"], ignore_index=True)
    )
    changed = same.assign(
        busy_cpu_seconds_total=[100.0, 10.0, 1.5, 3.0],  # (1, a) corrected
        memory_gib=[np.nan, 8.0, np.nan, 2.0],  # (1, c) now knows its memory
    )
    assert count_changed(changed, stored) == 2
    # A label set the record lacks (or has no longer) is a change of that host-hour alone.
    relabelled = same.assign(machine_name=["M", "M", "M", "N"])
    assert count_changed(relabelled, stored) == 1
    # Without the optional column on one side, unknown meets unknown: nothing changed.
    assert count_changed(same.drop(columns="memory_gib").iloc[[0, 2]], stored.iloc[[0, 2]]) == 0
    # Integers as the nullable type a database read may give compare as numbers too.
    assert count_changed(same.astype({"cpu_count": "Int64"}), stored) == 0


def test_a_partial_answer_never_replaces_and_two_label_sets_merge_per_label_set():
    from carbon_pipeline.captured import merge_host_cpu

    stored = host_hours(
        [
            (at(0), "a", "P", "M", 4, 100.0, 200.0),
            (at(0), "b", "P", "M", 2, 10.0, 20.0),  # relabelled mid-hour: two series
            (at(0), "b", "Q", "M", 2, 30.0, 40.0),
        ]
    )
    none = stored.iloc[:0]
    answer = host_hours(
        [
            (at(0), "a", "P", "M", 4, 50.0, 60.0),  # lower: part of the samples missing
            (at(0), "b", "Q", "M", 2, 31.0, 40.0),  # one of b's series, corrected
            (at(0), "c", "P", "M", 1, 1.0, 2.0),  # new
        ]
    )
    # Prometheus warned: every stored host-hour is kept as it is, the new one is added.
    kept, _, counts = merge_host_cpu(stored, none, answer, none, partial=True)
    got = {(r.hostname, r.cloud_project_name): r.busy_cpu_seconds_total for r in kept.itertuples()}
    assert got == {("a", "P"): 100.0, ("b", "P"): 10.0, ("b", "Q"): 30.0, ("c", "P"): 1.0}
    assert (counts.kept_over_partial, counts.added, counts.changed) == (2, 1, 0)
    # Without a warning: a's correction replaces it; b's answered series replaces its own
    # label set and b's other series is kept.
    kept, _, counts = merge_host_cpu(stored, none, answer, none)
    got = {(r.hostname, r.cloud_project_name): r.busy_cpu_seconds_total for r in kept.itertuples()}
    assert got == {("a", "P"): 50.0, ("b", "P"): 10.0, ("b", "Q"): 31.0, ("c", "P"): 1.0}
    assert (counts.kept_over_partial, counts.changed, counts.kept_missing) == (0, 2, 0)
    # Fewer cpus than stored is a partial answer for that series: the stored one is kept.
    fewer = answer.assign(cpu_count=[3, 2, 1])
    kept, _, counts = merge_host_cpu(stored, none, fewer, none)
    assert kept.loc[kept["hostname"] == "a", "busy_cpu_seconds_total"].tolist() == [100.0]
    assert counts.kept_over_partial == 1
    # A label set the record lacks for a host-hour relabels it: its stored series go.
    relabel = host_hours([(at(0), "b", "R", "M", 2, 40.0, 60.0)])
    kept, _, counts = merge_host_cpu(stored, none, relabel, none)
    b = kept[kept["hostname"] == "b"]
    assert b["cloud_project_name"].tolist() == ["R"] and b["busy_cpu_seconds_total"].sum() == 40.0
    assert counts.changed == 1 and len(kept) == 2


def test_an_hours_intensity_is_only_replaced_by_as_good_or_better():
    from carbon_pipeline.captured import merge_intensity

    def hours(rows):
        frame = pd.DataFrame(
            rows, columns=["timestamp_utc", "intensity_gco2eq_per_kwh", "intensity_source"]
        )
        frame["timestamp_utc"] = utc_ns(frame["timestamp_utc"])
        return frame

    stored = hours([(at(0), 150.0, "actual"), (at(1), 160.0, "forecast"), (at(2), 170.0, "actual")])
    answer = hours([(at(0), 200.0, "fallback"), (at(1), 161.0, "actual"), (at(2), 171.0, "actual")])
    merged, counts = merge_intensity(stored, answer)
    assert merged.values.tolist() == [
        [pd.Timestamp(at(0)), 150.0, "actual"],
        [pd.Timestamp(at(1)), 161.0, "actual"],
        [pd.Timestamp(at(2)), 171.0, "actual"],
    ]
    assert (counts.kept_better, counts.upgraded, counts.changed) == (1, 1, 1)


HELD_GAP, BETWEEN_GAP = (
    "held by a workspace but not reported",
    "not reported, though it reported before and after",
)


def test_gaps_are_hosts_up_without_data_and_hours_without_hosts():
    from carbon_pipeline.coverage import Coverage

    coverage = Coverage(at(0), at(4))
    # a reports at 0 and 3 (not 1, 2); b at 0 only; nobody at 1 and 2.
    coverage.reported(
        host_hours(
            [
                (at(0), "a", "P", "M", 1, 1.0, 1.0),
                (at(3), "a", "P", "M", 1, 1.0, 1.0),
                (at(0), "b", "P", "M", 1, 1.0, 1.0),
            ]
        )
    )
    coverage.warned(["partial"], at(3), at(4))
    holdings = pd.DataFrame(
        {
            "hostname": ["b", "z", "y"],
            # b held from 00:30 on; z (never reported) for two minutes across 03:00, within
            # a scrape interval of both hours' edges: no hour owes a sample; y 02:30-03:10.
            "held_from": utc_ns([at(0.5), at(2 + 59 / 60), at(2.5)]),
            "held_until": utc_ns([None, at(3 + 1 / 60), at(3 + 10 / 60)]),
        }
    )
    gaps = coverage.gaps(holdings)
    got = {(r.timestamp_utc.hour, r.hostname, r.reason) for r in gaps.itertuples()}
    assert got == {
        (1, "*", "no host reported"),
        (2, "*", "no host reported"),
        (3, "*", "Prometheus warned: partial"),
        (1, "a", BETWEEN_GAP),
        (2, "a", BETWEEN_GAP),
        (1, "b", HELD_GAP),
        (2, "b", HELD_GAP),
        (3, "b", HELD_GAP),
        (2, "y", HELD_GAP),
        (3, "y", HELD_GAP),
    }
    assert set(gaps.loc[gaps["hostname"] == "a", "cloud_project_name"]) == {"P"}


def test_before_and_after_means_a_short_silence_of_one_identity():
    from carbon_pipeline.coverage import Coverage

    coverage = Coverage(at(0), at(8))
    coverage.reported(
        host_hours(
            [
                # silent 3 hours (1-3): gaps; then 4 hours (5-8): a stopped VM, none.
                *((at(h), "a", "P", "M", 1, 1.0, 1.0) for h in (0, 4, 9)),
                # the address reused by another project after an hour: a new host, no gap.
                (at(1), "r", "P", "M", 1, 1.0, 1.0),
                (at(3), "r", "Q", "M", 1, 1.0, 1.0),
                # its silence began before the window (reported at -2, then at 1): gap at
                # -1 is not the window's, 0 is.
                *((at(h), "m", "P", "M", 1, 1.0, 1.0) for h in (-2, 1)),
                # silent at 7 and 8: its next report (at 9) is after the window, within the
                # hours around it that the run reads.
                *((at(h), "n", "P", "M", 1, 1.0, 1.0) for h in (6, 9)),
                # relabelled mid-hour: reports under its new labels in the hour, no gap.
                (at(2), "s", "P", "M", 1, 1.0, 1.0),
                (at(3), "s", "Q", "M", 1, 1.0, 1.0),
                (at(4), "s", "P", "M", 1, 1.0, 1.0),
            ]
        )
    )
    gaps = coverage.gaps(pd.DataFrame({"hostname": [], "held_from": [], "held_until": []}))
    got = {(r.timestamp_utc.hour, r.hostname) for r in gaps.itertuples() if r.hostname != "*"}
    assert got == {(1, "a"), (2, "a"), (3, "a"), (0, "m"), (7, "n")}
    assert set(gaps.loc[gaps["hostname"] != "*", "reason"]) == {BETWEEN_GAP}


def test_coverage_grows_to_any_number_of_hosts():
    from carbon_pipeline.coverage import Coverage

    coverage = Coverage(at(0), at(3))
    names = [f"h{n}" for n in range(1000)]
    # Every host reports at 00:00 and 02:00; only the first ten at 01:00.
    for hour, reporting in ((0, names), (1, names[:10]), (2, names)):
        coverage.reported(
            host_hours([(at(hour), name, "P", "M", 1, 1.0, 1.0) for name in reporting])
        )
    gaps = coverage.gaps(pd.DataFrame({"hostname": [], "held_from": [], "held_until": []}))
    assert len(gaps) == 990 and set(gaps["timestamp_utc"]) == {pd.Timestamp(at(1))}
    assert set(gaps["hostname"]) == set(names[10:])


@pytest.mark.parametrize(
    "text, hidden, shown",
    [
        ("postgresql://carbon:pa/ss@db:5432/w", "pa/ss", "postgresql://carbon:***@db:5432/w"),
        ("https://api.example/x?token=abc123&page=2", "abc123", "token=***&page=2"),
        ("http://p:9090/api?access_token=zz9 failed", "zz9", "access_token=*** failed"),
        ("connect to postgresql://u:secret@h/d failed", "secret", "postgresql://u:***@h/d"),
    ],
)
def test_secrets_are_masked_in_any_text(text, hidden, shown):
    from carbon_pipeline.secrets import mask_secrets, mask_url

    for masked in (mask_secrets(text), mask_url(text)):
        assert hidden not in masked and shown in masked


def test_registry_times_are_dates_iso_text_or_epochs():
    from carbon_pipeline.resources.registry import parse_workspace

    seven = datetime(2025, 3, 20, 7, tzinfo=UTC)
    for value in (
        seven,
        seven.replace(tzinfo=None),
        "2025-03-20T07:00:00Z",
        "2025-03-20 07:00",
        int(seven.timestamp()),
        seven.timestamp() * 1000,
    ):
        row, problems = parse_workspace(
            {"_id": "w", "hostname": "h", "owner": "o", "created_time": value}
        )
        assert row == ("w", "h", "o", seven, None, None) and problems == [], value
    for value, why in (
        ("soon", "'soon' is not an ISO 8601 time"),
        (True, "a boolean (True) is not a time"),
        ({"$x": 1}, "a dict is not a time"),
        (None, "missing"),
    ):
        row, problems = parse_workspace({"_id": "w", "hostname": "h", "created_time": value})
        assert row is None and problems == [
            f"workspace w: created_time: {why}; the workspace is skipped"
        ]
    row, problems = parse_workspace(
        {"_id": "w", "hostname": "h", "owner": ["o"], "created_time": seven}
    )
    assert row == ("w", "h", None, seven, None, None)
    assert problems == [
        "workspace w: owner: a list is not a platform_name; its hours go to unattributed"
    ]


def test_a_hosts_labels_are_chosen_the_same_whatever_the_row_order():
    from carbon_pipeline.assets.usage import latest_labels

    rows = pd.DataFrame(
        {
            "timestamp_utc": utc_ns([at(0), at(1), at(1), at(1)]),
            "hostname": ["a", "a", "a", "b"],
            "cloud_project_name": ["P", "P", "Q", "P"],
            "machine_name": ["M", "N", "M", "M"],
        }
    )
    want = latest_labels(rows).sort_values("hostname", ignore_index=True)
    assert want[["hostname", "cloud_project_name", "machine_name"]].values.tolist() == [
        ["a", "Q", "M"],
        ["b", "P", "M"],
    ]
    for seed in range(5):
        shuffled = rows.sample(frac=1, random_state=seed)
        got = latest_labels(shuffled).sort_values("hostname", ignore_index=True)
        pd.testing.assert_frame_equal(got, want)


def test_group_names_shared_by_two_pairs_are_refused():
    from carbon_pipeline.attribution import GroupNameError, refuse_colliding_groups

    pairs = pd.DataFrame(
        {
            "group_name": ["A_B_C", "X_Y"],
            "cloud_project_name": ["A_B", "X"],
            "machine_name": ["C", "Y"],
        }
    )
    refuse_colliding_groups(pd.concat([pairs, pairs]))  # the same pair twice is fine
    clash = pd.DataFrame(
        {"group_name": ["A_B_C"], "cloud_project_name": ["A"], "machine_name": ["B_C"]}
    )
    with pytest.raises(
        GroupNameError, match="'A_B_C' would stand for project 'A' with machine 'B_C'"
    ):
        refuse_colliding_groups(pd.concat([pairs, clash]))


def test_impossible_intensities_use_the_forecast_else_the_fallback():
    frame = periods(
        [
            (at(0), 100.0, -3.0),  # negative actual: forecast
            (at(0.5), 100.0, 110.0),
            (at(1), 120.0, float("inf")),  # infinite actual: forecast
            (at(1.5), 2000.0, float("nan")),  # impossible forecast, no actual: unusable
            (at(2), -1.0, 1600.0),  # nothing usable in the hour
            (at(2.5), float("nan"), None),
        ]
    )
    hours = hourly_intensity(frame, at(0), at(3), fallback_gco2eq_per_kwh=200.0)
    assert hours["intensity_gco2eq_per_kwh"].tolist() == [105.0, 120.0, 200.0]
    assert hours["intensity_source"].tolist() == ["forecast", "forecast", "fallback"]
    assert hours["period_count"].tolist() == [2, 1, 0]
    assert hours["glitch_periods"].tolist() == [1, 1, 0]


def one_host_hour(**values) -> tuple[pd.DataFrame, ...]:
    """A host-hour and the model, intensities it needs, for energy.instance_usage."""
    frame = pd.DataFrame(
        {
            "timestamp_utc": utc_ns([at(0)]),
            "hostname": ["h"],
            "cloud_project_name": ["P"],
            "machine_name": ["M"],
            "cpu_count": [values["cpus"]],
            "busy_cpu_seconds_total": [values["busy"]],
            "idle_cpu_seconds_total": [values["idle"]],
            "memory_gib": [values["memory_gib"]],
        }
    )
    model = pd.DataFrame(
        {
            "busy_watts_per_core": [values["busy_w"]],
            "idle_watts_per_core": [values["idle_w"]],
            "memory_watts_per_gib": [0.3725],
            "embodied_kgco2e": [values.get("embodied_kg", 1000.0)],
            "lifetime_years": [4.0],
            "server_threads": [values.get("threads", 64.0)],
            "site": ["S"],
            "region_id": [12],
            "pue": [values["pue"]],
        }
    )
    national = pd.DataFrame(
        {
            "timestamp_utc": utc_ns([at(0)]),
            "intensity_gco2eq_per_kwh": [values["intensity"]],
            "intensity_source": ["actual"],
        }
    )
    regional = national.rename(
        columns={"intensity_gco2eq_per_kwh": "regional_intensity_gco2eq_per_kwh"}
    ).assign(region_id=12, regional_intensity_gco2eq_per_kwh=values.get("regional", 150.0))
    return frame, national, model, regional


def test_the_full_footprint_reproduces_green_algorithms():
    """Green Algorithms (Lannelongue et al. 2021): energy = t x (n x P x u + mem x 0.3725 W/GB)
    x PUE. Worked example: 4 cores at 12 W, 50% used, 16 GB, PUE 1.67, 1 h, 200 gCO2eq/kWh:
    (4 x 12 x 0.5 + 16 x 0.3725) x 1.67 = (24 + 5.96) x 1.67 = 50.0332 Wh; 10.00664 gCO2eq.
    Our model gives it with no idle power (the seed's 1 W idle is our own addition)."""
    from carbon_pipeline.energy import instance_usage

    usage = instance_usage(
        *one_host_hour(
            cpus=4,
            busy=4 * 3600 * 0.5,
            idle=4 * 3600 * 0.5,
            memory_gib=16.0,
            busy_w=12.0,
            idle_w=0.0,
            pue=1.67,
            intensity=200.0,
            embodied_kg=0.0,
        )
    ).iloc[0]
    assert usage["full_kwh"] == pytest.approx(0.0500332, rel=1e-12)
    assert usage["full_gco2eq"] == pytest.approx(10.00664, rel=1e-12)
    assert usage["memory_kwh"] == pytest.approx(16 * 0.3725 / 1000, rel=1e-12)
    assert usage["overhead_kwh"] == pytest.approx(0.0500332 - 0.02996, rel=1e-12)
    assert usage["regional_gco2eq"] == pytest.approx(0.0500332 * 150.0, rel=1e-12)
    # The seed's columns keep their meaning: CPU only, no overhead.
    assert usage["busy_kwh"] == pytest.approx(0.024, rel=1e-12) and usage["idle_kwh"] == 0.0


def test_embodied_carbon_follows_ccf_amortisation():
    """Cloud Carbon Footprint (after the SCI): M = TE x (TR / EL) x (RR / TR). Worked example:
    a 1,000 kgCO2e server lasting 4 years (35,064 h), 8 of its 64 threads held for one hour:
    1,000,000 g x 1/35,064 x 8/64 = 3.565480...; a host up for half the hour holds half."""
    from carbon_pipeline.energy import instance_usage

    full = instance_usage(
        *one_host_hour(
            cpus=8,
            busy=8 * 1800.0,
            idle=8 * 1800.0,
            memory_gib=0.0,
            busy_w=12.0,
            idle_w=1.0,
            pue=1.0,
            intensity=100.0,
        )
    ).iloc[0]
    assert full["embodied_gco2eq"] == pytest.approx(1e6 / 35064 * 8 / 64, rel=1e-12)
    half = instance_usage(
        *one_host_hour(
            cpus=8,
            busy=8 * 900.0,
            idle=8 * 900.0,
            memory_gib=0.0,
            busy_w=12.0,
            idle_w=1.0,
            pue=1.0,
            intensity=100.0,
        )
    ).iloc[0]
    assert half["embodied_gco2eq"] == pytest.approx(full["embodied_gco2eq"] / 2, rel=1e-12)
    # Embodied carbon does not depend on the grid; a host bigger than a server holds one server.
    greener = instance_usage(
        *one_host_hour(
            cpus=128,
            busy=128 * 1800.0,
            idle=128 * 1800.0,
            memory_gib=0.0,
            busy_w=12.0,
            idle_w=1.0,
            pue=1.0,
            intensity=10.0,
        )
    ).iloc[0]
    assert greener["embodied_gco2eq"] == pytest.approx(1e6 / 35064, rel=1e-12)


def test_an_unknown_memory_is_left_out_of_a_scopes_full_footprint_and_counted():
    from carbon_pipeline.energy import instance_usage, sum_metrics

    usage = instance_usage(
        *one_host_hour(
            cpus=2,
            busy=3600.0,
            idle=3600.0,
            memory_gib=float("nan"),
            busy_w=12.0,
            idle_w=1.0,
            pue=1.2,
            intensity=100.0,
        )
    )
    assert usage["full_gco2eq"].isna().all() and usage["busy_gco2eq"].iloc[0] == pytest.approx(1.2)
    known = instance_usage(
        *one_host_hour(
            cpus=2,
            busy=3600.0,
            idle=3600.0,
            memory_gib=4.0,
            busy_w=12.0,
            idle_w=1.0,
            pue=1.2,
            intensity=100.0,
        )
    ).assign(hostname="k")
    # A scope sums the host-hours that know their full footprint, all its parts over the same
    # host-hours (the unknown one's embodied carbon is known but left out: full = its parts),
    # and counts the unknown one; the seed's numbers sum both.
    summed = sum_metrics(pd.concat([usage, known]), ["timestamp_utc"]).iloc[0]
    only_known = known.iloc[0]
    for metric in ("memory_kwh", "overhead_kwh", "full_kwh", "embodied_gco2eq", "full_gco2eq"):
        assert summed[metric] == pytest.approx(only_known[metric], rel=1e-12), metric
    assert summed["full_gco2eq"] == pytest.approx(
        summed[["busy_gco2eq", "idle_gco2eq"]].sum()
        - usage["busy_gco2eq"].iloc[0]
        - usage["idle_gco2eq"].iloc[0]
        + summed[["memory_gco2eq", "overhead_gco2eq", "embodied_gco2eq"]].sum(),
        rel=1e-12,
    )
    assert summed["busy_kwh"] == pytest.approx(2 * 0.012)
    assert (summed["footprint_unknown_hosts"], summed["regional_unknown_hosts"]) == (1, 1)
    # Nothing known: NULL, never 0; summing sums adds their counts.
    alone = sum_metrics(usage, ["timestamp_utc"])
    assert pd.isna(alone["full_kwh"].iloc[0]) and alone["footprint_unknown_hosts"].iloc[0] == 1
    twice = sum_metrics(pd.concat([alone, alone]), ["timestamp_utc"]).iloc[0]
    assert pd.isna(twice["full_kwh"]) and twice["footprint_unknown_hosts"] == 2


def test_a_metric_must_be_non_negative_and_finite_and_only_a_footprint_may_be_unknown():
    from pandera.errors import SchemaErrors

    from carbon_pipeline.energy import METRICS, UNKNOWN_COUNTS
    from carbon_pipeline.schemas import scope_fact_schema, validate

    hours = pd.date_range(T0, periods=4, freq="h")
    frame = pd.DataFrame(
        {
            "timestamp_utc": hours,
            **{m: [1.0, 2.0, 3.0, 4.0] for m in METRICS},
            "intensity_gco2eq_per_kwh": 100.0,
            "intensity_source": "actual",
            "users": 1,
            **{c: 0 for c in UNKNOWN_COUNTS},
        }
    )
    unknown_footprint = frame.assign(full_gco2eq=[1.0, np.nan, 3.0, 4.0])
    assert (
        validate(scope_fact_schema("ada", []), unknown_footprint)["full_gco2eq"].isna().sum() == 1
    )

    bad = frame.assign(busy_kwh=[1.0, -0.5, 3.0, 4.0], idle_kwh=[1.0, 2.0, np.inf, 4.0])
    bad = bad.assign(busy_gco2eq=[1.0, np.nan, 3.0, 4.0])  # the seed's metrics are never unknown
    with pytest.raises(SchemaErrors) as raised:
        validate(scope_fact_schema("ada", []), bad)
    failures = raised.value.failure_cases
    assert sorted(zip(failures["column"], failures["index"].astype(int), strict=True)) == [
        ("busy_gco2eq", 1),
        ("busy_kwh", 1),
        ("idle_kwh", 2),
    ]
    assert "non-negative and finite" in str(raised.value)


def test_the_next_chunk_is_asked_while_this_one_is_worked_on_and_never_more():
    """asked_ahead: answers in order; the next window's asked before the caller is done with
    this one, never two ahead; an error is raised where its window is taken, after the
    windows before it; a caller stopping early leaves nothing running."""
    windows = [(at(h), at(h + 1)) for h in range(4)]
    events: list[str] = []
    asked_two = threading.Event()

    def ask(start, end):
        hour = int((start - T0) / timedelta(hours=1))
        events.append(f"ask {hour}")
        if hour == 2:
            asked_two.set()
            raise RuntimeError("Prometheus refused hour 2")
        return hour * 10

    taken = []
    with pytest.raises(RuntimeError, match="refused hour 2"):
        for start, end, answer in asked_ahead(ask, windows):
            assert (start, end) == windows[len(taken)]
            taken.append(answer)
            if answer == 10:
                assert asked_two.wait(10), "hour 2 was not asked while hour 1 was worked on"
            events.append(f"took {answer // 10}")
    assert taken == [0, 10]
    assert events.index("took 0") < events.index("ask 2") < events.index("took 1")
    assert events.count("ask 3") <= 1

    # Stopping early: the question in flight is awaited, not left running.
    events.clear()
    in_flight = threading.Event()

    def slow(start, end):
        if start == windows[1][0]:
            in_flight.set()
            time.sleep(0.2)
            events.append("answered 1")
        return start

    answers = asked_ahead(slow, windows)
    next(answers)
    assert in_flight.wait(10)
    answers.close()
    assert events == ["answered 1"]
    assert not [t for t in threading.enumerate() if t.name.startswith("asked-ahead")]
