"""When to run: the greenest start times for a job, from the stored forecast
(greenest_window), as `carbon-pipeline greenest` and the demo print them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg


@dataclass(frozen=True)
class Window:
    rank: int
    start: datetime
    end: datetime
    mean_gco2eq_per_kwh: float
    now_gco2eq_per_kwh: float | None
    saving_gco2eq_per_kwh: float | None
    saving_share: float | None
    region_id: int
    issued_at: datetime


def greenest_windows(
    conn: psycopg.Connection,
    hours: float,
    site: str | None = None,
    within_hours: float = 48,
    best: int = 3,
    at: datetime | None = None,
) -> list[Window]:
    """greenest_window()'s rows; its errors (an unknown site, no recent forecast) raise
    psycopg errors whose message names what was wrong."""
    rows = conn.execute(
        "SELECT * FROM greenest_window(%s, %s, %s, %s, %s)",
        (timedelta(hours=hours), site, timedelta(hours=within_hours), at, best),
    ).fetchall()
    return [
        Window(rank, start.astimezone(UTC), end.astimezone(UTC), *values, issued.astimezone(UTC))
        for rank, start, end, *values, issued in rows
    ]


def report(windows: list[Window], hours: float, site: str | None) -> str:
    """The windows as a short table for a terminal."""
    where = f"at {site} (GB region {windows[0].region_id})" if site and windows else "in GB"
    if not windows:
        return f"No {hours:g}-hour window fits in the stored forecast {where}.\n"
    first = windows[0]
    lines = [
        f"Greenest {hours:g}-hour windows {where}, forecast issued "
        f"{first.issued_at:%Y-%m-%d %H:%M} UTC:",
        f"  {'start (UTC)':<18}{'end (UTC)':<18}{'gCO2eq/kWh':>11}{'saving vs now':>16}",
    ]
    for w in windows:
        saving = (
            f"{w.saving_gco2eq_per_kwh:,.0f} ({w.saving_share:.0%})"
            if w.saving_gco2eq_per_kwh is not None and w.saving_share is not None
            else "-"
        )
        lines.append(
            f"  {w.start:%Y-%m-%d %H:%M}  {w.end:%Y-%m-%d %H:%M}  "
            f"{w.mean_gco2eq_per_kwh:>11,.0f}{saving:>16}"
        )
    if first.now_gco2eq_per_kwh is not None:
        lines.append(
            f"  starting now: {first.now_gco2eq_per_kwh:,.0f} gCO2eq/kWh "
            "(saving: gCO2eq per kWh the job draws)"
        )
    return "\n".join(lines) + "\n"
