"""A local HTTP server speaking the Carbon Intensity API's `/intensity/{from}/{to}` contract,
and `/regional/intensity/{from}/{to}/regionid/{id}`'s (forecasts only, the periods nested in
an object: {"data": {"regionid", "shortname", "data": [...]}}), and both routes' 48-hour
forecasts, `{from}/fw48h` in place of `{from}/{to}` (actuals null): by default the stored
periods' forecasts, or what `forecast(issued)` gives for a forecast asked from `issued` (a
frame like `periods`), so that two fetches can see two vintages.

Like the real service it answers at most 14 days a request, returns every half-hour period
touching the range (including the one that ends at `from`), leaves out periods it has no data
for, and reports errors as `{"error": {"code", "message"}}`. `fault` makes it misbehave for
fault-injection tests: "500", "garbage" or "hang"; `failing_window` fails only the requests
that overlap a window.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pandas as pd

MAX_DAYS = 14
NESO_FILE = "neso_2023_national_intensity.csv"


def _find_neso_2023() -> Path:
    """The real 2023 record: in CARBON_PIPELINE_SHARED_DATA, else ../shared/data beside the
    repository or the working folder, else the workplace's shared folder."""
    candidates = [
        Path(os.environ.get("CARBON_PIPELINE_SHARED_DATA", "/nonexistent")) / NESO_FILE,
        Path(__file__).resolve().parents[3] / "shared" / "data" / NESO_FILE,
        Path.cwd().parent / "shared" / "data" / NESO_FILE,
        Path("/work/shared/data") / NESO_FILE,
    ]
    return next((c for c in candidates if c.exists()), candidates[1])


NESO_2023 = _find_neso_2023()


def _index(value: float) -> str:
    for limit, name in ((40, "very low"), (120, "low"), (200, "moderate"), (290, "high")):
        if value < limit:
            return name
    return "very high"


def synthetic_periods(start: datetime, end: datetime, seed: int = 3) -> pd.DataFrame:
    """Half-hour periods with a daily cycle, forecast and actual both whole numbers."""
    starts = pd.date_range(start, end, freq="30min", inclusive="left")
    rng = np.random.default_rng(seed)
    hours = starts.hour.to_numpy() + starts.minute.to_numpy() / 60
    forecast = np.rint(
        170 + 70 * np.sin(2 * np.pi * (hours - 12) / 24) + rng.normal(0, 15, len(starts))
    )
    actual = forecast + np.rint(rng.normal(0, 8, len(starts)))
    return pd.DataFrame(
        {
            "period_from": starts,
            "period_to": starts + pd.Timedelta(minutes=30),
            "forecast": np.clip(forecast, 20, None),
            "actual": np.clip(actual, 20, None),
        }
    )


def neso_periods(path: Path = NESO_2023) -> pd.DataFrame:
    """The real 2023 record (gaps, null actuals and zero glitches included)."""
    raw = pd.read_csv(path)
    return pd.DataFrame(
        {
            "period_from": pd.to_datetime(raw["from"], utc=True),
            "period_to": pd.to_datetime(raw["to"], utc=True),
            "forecast": raw["forecast"].astype(float),
            "actual": raw["actual"].astype(float),
        }
    )


# A region's forecast is the national one times this (rounded), region 12 (South England,
# RAL's) at 0.8; every other region at 1 + (id - 12) / 20.
def regional_factor(region_id: int) -> float:
    return 0.8 if region_id == 12 else 1.0 + (region_id - 12) / 20


def regional_forecast(national_forecast: float, region_id: int) -> float:
    return float(round(national_forecast * regional_factor(region_id)))


def _parse(text: str) -> datetime:
    for fmt in ("%Y-%m-%dT%H:%MZ", "%Y-%m-%dT%H:%M:%SZ"):
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=UTC)
        except ValueError:
            pass
    raise ValueError(text)


class IntensityServer:
    """Serves `periods` on 127.0.0.1 (random port) from a background thread."""

    def __init__(
        self,
        periods: pd.DataFrame,
        port: int = 0,
        forecast: Callable[[datetime], pd.DataFrame] | None = None,
    ):
        self.periods = periods.sort_values("period_from", ignore_index=True)
        self.forecast = forecast
        self.fault: str | None = None
        self.hang_seconds = 30.0
        self.delay_seconds = 0.0  # every answer waits this long (a slow API, still correct)
        self.fail_next = 0  # this many next requests fail with a 500
        # Requests overlapping this [start, end) window fail with a 500 (None: none do).
        self.failing_window: tuple[datetime, datetime] | None = None
        self.requests: list[str] = []
        self.lock = threading.Lock()  # handler threads share fail_next
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def do_GET(self):
                server.requests.append(self.path)
                status, body = server.answer(self.path)
                payload = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def start(self) -> IntensityServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def answer(self, path: str) -> tuple[int, object]:
        # Every fault is decided as the request arrives: a request still sleeping when a
        # test changes the faults must not take the next test's.
        with self.lock:
            fault, fail_once, failing = self.fault, self.fail_next > 0, self.failing_window
            if fail_once:
                self.fail_next -= 1
        time.sleep(self.delay_seconds + (self.hang_seconds if fault == "hang" else 0.0))
        if fault == "500":
            return 500, {"error": {"code": "500 Internal Server Error", "message": "injected"}}
        if fault == "garbage":
            return 200, b"<html>not json"
        if fail_once:
            return 500, {"error": {"code": "500 Internal Server Error", "message": "injected once"}}
        parts = path.strip("/").split("/")
        region_id = None
        if len(parts) == 6 and parts[:2] == ["regional", "intensity"] and parts[4] == "regionid":
            try:
                region_id = int(parts[5])
            except ValueError:
                return 400, {"error": {"code": "400 Bad Request", "message": "bad region id"}}
            parts = parts[1:4]
        if len(parts) != 3 or parts[0] != "intensity":
            return 400, {"error": {"code": "400 Bad Request", "message": f"unknown path {path}"}}
        forecast = parts[2] == "fw48h"
        try:
            start = _parse(parts[1])
            end = start + timedelta(hours=48) if forecast else _parse(parts[2])
        except ValueError as exc:
            return 400, {"error": {"code": "400 Bad Request", "message": f"bad date {exc}"}}
        if failing and start < failing[1] and end > failing[0]:
            return 500, {"error": {"code": "500 Internal Server Error", "message": "injected"}}
        if end - start > timedelta(days=MAX_DAYS):
            return 400, {
                "error": {
                    "code": "400 Bad Request",
                    "message": "Date range must not exceed 14 days",
                }
            }
        p = self.periods
        if forecast:
            p = self.forecast(start) if self.forecast else p
            p = p.assign(actual=np.nan)  # the future has no actuals
        touching = p[(p["period_to"] >= start) & (p["period_from"] < end)]
        if region_id is not None:
            data = [
                {
                    "from": f.strftime("%Y-%m-%dT%H:%MZ"),
                    "to": t.strftime("%Y-%m-%dT%H:%MZ"),
                    "intensity": {
                        "forecast": int(regional_forecast(fc, region_id)),
                        "index": _index(regional_forecast(fc, region_id)),
                    },
                }
                for f, t, fc in touching[["period_from", "period_to", "forecast"]].itertuples(
                    index=False
                )
                if not pd.isna(fc)
            ]
            return 200, {
                "data": {"regionid": region_id, "shortname": f"region {region_id}", "data": data}
            }
        data = [
            {
                "from": f.strftime("%Y-%m-%dT%H:%MZ"),
                "to": t.strftime("%Y-%m-%dT%H:%MZ"),
                "intensity": {
                    "forecast": None if pd.isna(fc) else int(fc),
                    "actual": None
                    if pd.isna(ac)
                    else int(ac)
                    if float(ac).is_integer()
                    else float(ac),
                    "index": _index(ac if not pd.isna(ac) else fc),
                },
            }
            for f, t, fc, ac in touching[
                ["period_from", "period_to", "forecast", "actual"]
            ].itertuples(index=False)
        ]
        return 200, {"data": data}
