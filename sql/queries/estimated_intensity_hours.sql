-- Stored national hours whose intensity is not an actual (a forecast, the fallback, or one
-- half-hour only), within the actuals sensor's look-back [since, until).
SELECT extract(epoch FROM timestamp_utc)::bigint AS timestamp_epoch, intensity_source, period_count
FROM carbon_intensity_hourly
WHERE (intensity_source <> 'actual' OR period_count < 2)
  AND timestamp_utc >= %(since)s AND timestamp_utc < %(until)s
ORDER BY timestamp_utc
