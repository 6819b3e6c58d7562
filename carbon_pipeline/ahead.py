"""A window's chunks with the next chunk's input asked for while the current one is worked on.

The sources (Prometheus, the warehouse read back) answer from processes of their own, on the
machine's other cores: asking one chunk ahead hides the wait behind the transform and writes
of the chunk before it, instead of adding the two up.

Stages ask inside their window's transaction, after its write lock: a chunk read before the
lock could predate what an overlapping run, finishing first, committed, and this run's
facts, committed last, would then be derived from rows no longer stored.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import TypeVar

T = TypeVar("T")


def asked_ahead(
    ask: Callable[[datetime, datetime], T], windows: Iterable[tuple[datetime, datetime]]
) -> Iterator[tuple[datetime, datetime, T]]:
    """(start, end, ask(start, end)) for each window in order, the next window's asked in a
    thread while the caller works on this one. One question is in flight at a time; an
    error is raised where its window is taken, and none is left running when the caller
    stops early (the one in flight is awaited, its answer or error dropped)."""
    windows = iter(windows)
    with ThreadPoolExecutor(1, thread_name_prefix="asked-ahead") as asker:
        following = next(windows, None)
        asked = following and asker.submit(ask, *following)
        while asked:
            current, answer = following, asked
            following = next(windows, None)
            asked = following and asker.submit(ask, *following)
            try:
                yield (*current, answer.result())
            except BaseException:
                if asked:
                    asked.cancel()
                raise
