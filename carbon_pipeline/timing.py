"""Wall time spent per phase (source queries, transforms, warehouse I/O) in this process, so
runs can report where their time went and the benchmark can break a backfill down."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

# release: what carbon_reporter may see of the window's hours, decided after its facts, and
# its check; rollups: the daily to lifetime sums recomputed then, and their conservation check.
PHASES = (
    "prometheus",
    "intensity_api",
    "registry",
    "transform",
    "postgres_read",
    "postgres_write",
    "release",
    "rollups",
)
_seconds: defaultdict[str, float] = defaultdict(float)
# Phases may run in threads at once (a source asked ahead while the caller transforms): each
# is timed on its own, so their sum can exceed the wall time.
_adding = threading.Lock()


@contextmanager
def phase(name: str) -> Iterator[None]:
    began = time.perf_counter()
    try:
        yield
    finally:
        with _adding:
            _seconds[name] += time.perf_counter() - began


def add(name: str, seconds: float) -> None:
    """Seconds spent on a phase measured elsewhere (by the database, inside one statement)."""
    with _adding:
        _seconds[name] += seconds


def totals() -> dict[str, float]:
    """Seconds per phase since the process started (or since reset())."""
    return {name: _seconds.get(name, 0.0) for name in PHASES}


def reset() -> None:
    _seconds.clear()
