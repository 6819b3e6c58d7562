-- Hourly intensity of every region stored for [%(start)s, %(end)s), with its provenance.
SELECT
  extract(epoch FROM timestamp_utc)::bigint AS timestamp_epoch,
  region_id,
  intensity_gco2eq_per_kwh,
  intensity_source,
  forecast_gco2eq_per_kwh,
  period_count
FROM carbon_intensity_regional_hourly
WHERE timestamp_utc >= %(start)s AND timestamp_utc < %(end)s
ORDER BY region_id, timestamp_utc
