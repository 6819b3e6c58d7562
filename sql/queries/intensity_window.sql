-- Hourly intensity of [%(start)s, %(end)s), with its provenance.
SELECT
  extract(epoch FROM timestamp_utc)::bigint AS timestamp_epoch,
  intensity_gco2eq_per_kwh,
  intensity_source,
  forecast_gco2eq_per_kwh,
  actual_gco2eq_per_kwh,
  period_count,
  glitch_periods
FROM carbon_intensity_hourly
WHERE timestamp_utc >= %(start)s AND timestamp_utc < %(end)s
ORDER BY timestamp_utc
