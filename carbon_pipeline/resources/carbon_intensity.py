"""The GB Carbon Intensity API: national and regional intensity per half-hour period, and
their 48-hour forecasts."""

from __future__ import annotations

from datetime import datetime, timedelta

import dagster as dg
import pandas as pd
import requests
from pydantic import Field, PrivateAttr

from carbon_pipeline.resources.http import Budget, decoded_json, request_within
from carbon_pipeline.secrets import mask_secrets, mask_url
from carbon_pipeline.times import utc_ns
from carbon_pipeline.timing import phase

DEFAULT_API_URL = "https://api.carbonintensity.org.uk"
PERIOD_COLUMNS = ["period_from", "period_to", "forecast", "actual", "index"]
FORECAST_HOURS = 48


class CarbonIntensityError(RuntimeError):
    """The API could not give the periods of a window; names the request."""


def _api_time(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%MZ")


def parse_periods(body: object, where: str) -> pd.DataFrame:
    """The `data` array of an /intensity answer as a frame; a clear error on any other shape."""
    if not isinstance(body, dict) or not isinstance(body.get("data"), list):
        raise CarbonIntensityError(f"unexpected answer {where}: {str(body)[:200]!r}")
    rows = []
    for item in body["data"]:
        try:
            intensity = item["intensity"]
            rows.append(
                (
                    item["from"],
                    item["to"],
                    intensity.get("forecast"),
                    intensity.get("actual"),
                    intensity.get("index"),
                )
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise CarbonIntensityError(f"malformed period {item!r:.200} {where}") from exc
    frame = pd.DataFrame(rows, columns=PERIOD_COLUMNS)
    try:
        for column in ("period_from", "period_to"):
            frame[column] = utc_ns(pd.to_datetime(frame[column], utc=True, format="ISO8601"))
        for column in ("forecast", "actual"):
            frame[column] = pd.to_numeric(frame[column], errors="raise").astype("float64")
    except (ValueError, TypeError) as exc:
        raise CarbonIntensityError(f"malformed period values {where}: {exc}") from exc
    return frame


def regional_data(body: object, where: str) -> dict:
    """A regional answer's periods in the national answer's shape. The API nests them in an
    object ({"data": {"regionid", "shortname", "data": [...]}}), sometimes in a list of one."""
    data = body.get("data") if isinstance(body, dict) else None
    if isinstance(data, list) and len(data) == 1:
        data = data[0]
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise CarbonIntensityError(f"unexpected regional answer {where}: {str(body)[:200]!r}")
    return {"data": data["data"]}


class CarbonIntensityResource(dg.ConfigurableResource):
    """GET {api_url}/intensity/{from}/{to}; at most `max_days_per_request` days a call."""

    api_url: str = DEFAULT_API_URL
    max_days_per_request: int = 14
    on_missing: str = Field(
        default="fallback",
        description="An hour without intensity: 'fallback' (use fallback, flagged) or 'fail'.",
    )
    fallback_gco2eq_per_kwh: float = 200.0
    glitch_min_forecast: float = Field(
        default=10.0,
        description="An actual of 0 while the forecast is at least this is a glitch: use the forecast.",
    )
    timeout_seconds: float = Field(
        default=60.0, description="Longest a request may take, all its attempts together [s]."
    )
    run_timeout_seconds: float = Field(
        default=1800.0, description="Longest a run may spend asking the API, all requests [s]."
    )
    max_wait_seconds: float = Field(
        default=60.0, description="Longest wait before a retry, Retry-After included [s]."
    )
    retries: int = 3
    backoff_seconds: float = 1.0
    _budget: Budget = PrivateAttr(default_factory=Budget)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._budget.start(self.run_timeout_seconds)

    def periods(self, start: datetime, end: datetime, region_id: int | None = None) -> pd.DataFrame:
        """Every half-hour period starting in [start, end), one row each, sorted; raises
        CarbonIntensityError if any request fails."""
        periods, errors = self.fetch_periods(start, end, region_id=region_id)
        if errors:
            raise errors[0]
        return periods

    def fetch_periods(
        self, start: datetime, end: datetime, region_id: int | None = None
    ) -> tuple[pd.DataFrame, list[CarbonIntensityError]]:
        """The periods of every request (of at most max_days_per_request days) that
        succeeded, and the errors of those that failed: one bad fortnight does not cost the
        others. National intensity, or with `region_id` that GB region's (forecasts only)."""
        frames, errors = [], []
        chunk_start = start
        while chunk_start < end:
            chunk_end = min(end, chunk_start + timedelta(days=self.max_days_per_request))
            path = f"/intensity/{_api_time(chunk_start)}/{_api_time(chunk_end)}"
            if region_id is not None:
                path = f"/regional{path}/regionid/{region_id}"
            try:
                frames.append(self._request(path, regional=region_id is not None))
            except CarbonIntensityError as exc:
                errors.append(exc)
            chunk_start = chunk_end
        periods = (
            pd.concat(frames, ignore_index=True) if frames else parse_periods({"data": []}, "")
        )
        # The service also returns the period ending at `from`, and periods touching `to`.
        in_window = (periods["period_from"] >= start) & (periods["period_from"] < end)
        periods = (
            periods[in_window]
            .drop_duplicates("period_from", keep="last")
            .sort_values("period_from", ignore_index=True)
        )
        return periods, errors

    def forecast(self, issued_at: datetime, region_id: int | None = None) -> pd.DataFrame:
        """The forecast from the half-hour `issued_at` on (`/fw48h`): its periods starting in
        [issued_at, issued_at + 48 h), sorted; national, or with `region_id` that region's.
        Raises CarbonIntensityError naming the request when it fails (after its retries)."""
        path = f"/intensity/{_api_time(issued_at)}/fw{FORECAST_HOURS}h"
        if region_id is not None:
            path = f"/regional{path}/regionid/{region_id}"
        periods = self._request(path, regional=region_id is not None)
        ahead = (periods["period_from"] >= issued_at) & (
            periods["period_from"] < issued_at + timedelta(hours=FORECAST_HOURS)
        )
        return (
            periods[ahead & periods["forecast"].notna()]
            .drop_duplicates("period_from", keep="last")
            .sort_values("period_from", ignore_index=True)
        )

    def _request(self, path: str, regional: bool = False) -> pd.DataFrame:
        url = f"{self.api_url.rstrip('/')}{path}"
        where = f"from {mask_url(url)}"
        # The time budget is shared by every attempt: a hung API costs at most it.
        try:
            seconds = self._budget.call_seconds(self.timeout_seconds, "Carbon Intensity API")
        except requests.Timeout as exc:
            raise CarbonIntensityError(f"{exc} {where}") from exc
        per_attempt = max(0.1, seconds / (self.retries + 1))
        try:
            with phase("intensity_api"):
                response = request_within(
                    "GET",
                    url,
                    seconds,
                    retries=self.retries,
                    backoff_seconds=self.backoff_seconds,
                    max_wait_seconds=self.max_wait_seconds,
                    headers={"Accept": "application/json"},
                )
                body = decoded_json(response)
        except requests.JSONDecodeError as exc:
            raise CarbonIntensityError(
                f"HTTP {response.status_code} with non-JSON body {where}: {response.text[:200]!r}"
            ) from exc
        except requests.RequestException as exc:
            if isinstance(exc, requests.Timeout) or "timed out" in str(exc):
                raise CarbonIntensityError(
                    f"Carbon Intensity API unreachable: no complete answer in {seconds:g} s "
                    f"({self.retries + 1} attempt(s) of at most {per_attempt:g} s; "
                    f"{mask_secrets(str(exc))}) {where}"
                ) from exc
            raise CarbonIntensityError(
                f"Carbon Intensity API unreachable: {mask_url(url)}: {mask_secrets(str(exc))}"
            ) from exc
        if response.status_code != 200:
            raise CarbonIntensityError(f"HTTP {response.status_code} {where}: {body!r:.300}")
        return parse_periods(regional_data(body, where) if regional else body, where)
