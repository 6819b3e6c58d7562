"""HTTP for the clients: retries with backoff, and a total deadline on every call.

A call's deadline bounds everything it does: connecting, every attempt, every wait between
attempts (a `Retry-After` is obeyed up to `max_wait_seconds`, and never past the deadline),
and reading the answer, however slowly it trickles in (read timeouts alone bound each socket
read, not the whole body)."""

from __future__ import annotations

import gc
import time
from typing import Any

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

READ_SIZE = 1 << 16
MAX_WAIT_SECONDS = 60.0


class DeadlineExceeded(requests.Timeout):
    """A call did not finish within its deadline."""


class _BoundedRetry(Retry):
    """urllib3's Retry that caps Retry-After and gives up rather than wait past a deadline."""

    def __init__(
        self, *args, deadline: float | None = None, max_wait: float = MAX_WAIT_SECONDS, **kwargs
    ):
        super().__init__(*args, **kwargs)
        self.deadline = deadline
        self.max_wait = max_wait

    def new(self, **kwargs) -> _BoundedRetry:
        retry = super().new(**kwargs)
        retry.deadline, retry.max_wait = self.deadline, self.max_wait
        return retry

    def get_retry_after(self, response) -> float | None:
        seconds = super().get_retry_after(response)
        return None if seconds is None else min(seconds, self.max_wait)

    def increment(
        self, method=None, url=None, response=None, error=None, _pool=None, _stacktrace=None
    ):
        retry = super().increment(method, url, response, error, _pool, _stacktrace)
        if self.deadline is not None:
            after = retry.get_retry_after(response) if response is not None else None
            wait = after if after is not None else retry.get_backoff_time()
            if time.monotonic() + wait >= self.deadline:
                said = f"HTTP {response.status} " if response is not None else f"{error} "
                raise DeadlineExceeded(
                    f"gave up after {said}: the next attempt (in {wait:g} s) would pass the deadline"
                )
        return retry


def retrying_session(
    retries: int,
    backoff_seconds: float,
    deadline: float | None = None,
    max_wait_seconds: float = MAX_WAIT_SECONDS,
) -> requests.Session:
    """A session that retries connection errors and 429/5xx answers with exponential backoff,
    each wait at most max_wait_seconds (Retry-After included) and none past `deadline`
    (time.monotonic()). Timeouts are per call: use `request_within`."""
    retry = _BoundedRetry(
        total=retries,
        connect=retries,
        read=retries,
        status=retries,
        backoff_factor=backoff_seconds,
        backoff_max=max_wait_seconds,
        status_forcelist=(429, 500, 502, 503, 504),
        allowed_methods=frozenset({"GET", "POST"}),
        raise_on_status=False,
        respect_retry_after_header=True,
        deadline=deadline,
        max_wait=max_wait_seconds,
    )
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=retry)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def request_within(
    method: str,
    url: str,
    seconds: float,
    *,
    retries: int,
    backoff_seconds: float,
    max_wait_seconds: float = MAX_WAIT_SECONDS,
    connect_seconds: float = 10.0,
    **kwargs,
) -> requests.Response:
    """`method url`, retried, with its whole body read, all within `seconds`; raises
    DeadlineExceeded (a requests.Timeout) when that runs out. Each attempt may take what is
    left of the time, shared with the attempts after it."""
    deadline = time.monotonic() + seconds
    session = retrying_session(retries, backoff_seconds, deadline, max_wait_seconds)
    per_attempt = max(0.1, seconds / (retries + 1))
    try:
        response = session.request(
            method,
            url,
            stream=True,
            timeout=(min(connect_seconds, per_attempt), per_attempt),
            **kwargs,
        )
        body = bytearray()
        while True:
            if time.monotonic() >= deadline:
                response.close()
                raise DeadlineExceeded(f"the answer was not complete within {seconds:g} s")
            chunk = response.raw.read1(READ_SIZE, decode_content=True)
            if not chunk:
                break
            body += chunk
    except urllib3.exceptions.ReadTimeoutError as exc:  # reading the body stalled
        raise requests.Timeout(str(exc)) from exc
    except (urllib3.exceptions.HTTPError, OSError) as exc:  # the body cut short
        raise requests.ConnectionError(str(exc)) from exc
    finally:
        session.close()
    response._content = bytes(body)
    return response


class Budget:
    """What is left of a run's time for one source: each call gets at most its own limit and
    never more than the run has left. Start it when the run starts (`start`)."""

    def __init__(self) -> None:
        self._ends_at: float | None = None
        self._seconds = 0.0

    def start(self, seconds: float) -> None:
        self._ends_at, self._seconds = time.monotonic() + seconds, seconds

    def call_seconds(self, per_call: float, source: str) -> float:
        """The time a call may take now; raises DeadlineExceeded if the run's is spent."""
        if self._ends_at is None:
            return per_call
        left = self._ends_at - time.monotonic()
        if left <= 0:
            raise DeadlineExceeded(
                f"{source}: this run's time for it ({self._seconds:g} s) is spent"
            )
        return min(per_call, left)


def decoded_json(response: requests.Response) -> Any:
    """The answer's JSON, decoded with Python's cyclic garbage collector paused. A month of a
    Prometheus query is millions of small lists and strings and no reference cycles, and in a
    run's process (Dagster, pandas and the definitions: a large heap) every collection those
    allocations trigger scans that heap again: decoding 1.9 MB took 54 ms with the collector
    and 9.5 ms without. Raises requests.JSONDecodeError as response.json() does."""
    paused = gc.isenabled()
    gc.disable()
    try:
        return response.json()
    finally:
        if paused:
            gc.enable()
