"""UTC time helpers shared by every stage: one timestamp dtype, hour ranges, window chunks."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pandas as pd

HOUR = timedelta(hours=1)
TIMESTAMP_DTYPE = "datetime64[ns, UTC]"


def utc_ns(values) -> pd.Series:
    """Times as a datetime64[ns, UTC] Series: every frame uses this one dtype so that joins
    on time never meet two resolutions."""
    return pd.Series(pd.to_datetime(values, utc=True)).astype(TIMESTAMP_DTYPE)


def hour_range(start: datetime, end: datetime) -> pd.DatetimeIndex:
    """The hour starts of [start, end), in UTC."""
    return pd.date_range(pd.Timestamp(start), pd.Timestamp(end), freq="h", inclusive="left").astype(
        TIMESTAMP_DTYPE
    )


def parse_utc(text: str) -> datetime:
    """An ISO 8601 time (`2025-03-01T00:00Z`, `2025-03-01 00:00+00:00`, `2025-03-01`) as an
    aware UTC datetime; a time without offset is taken as UTC."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"not an ISO 8601 time: {text!r} (e.g. 2025-03-01T00:00Z)") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def whole_hours(start: datetime, end: datetime) -> None:
    """Refuse windows that are empty or not on hour boundaries."""
    for t in (start, end):
        if t.tzinfo is None or t.minute or t.second or t.microsecond:
            raise ValueError(f"{t.isoformat()} is not a UTC hour boundary")
    if end <= start:
        raise ValueError(
            f"empty window: end {end.isoformat()} is not after start {start.isoformat()}"
        )


def chunks(start: datetime, end: datetime, hours: int) -> Iterator[tuple[datetime, datetime]]:
    """[start, end) cut into consecutive windows of at most `hours` hours."""
    if hours < 1:
        raise ValueError(f"chunk size must be at least one hour, got {hours}")
    step = hours * HOUR
    while start < end:
        yield start, min(end, start + step)
        start += step
