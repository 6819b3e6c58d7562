-- Stored regional hours the API could not give (they took the national hour), within the
-- actuals sensor's look-back [since, until).
SELECT extract(epoch FROM timestamp_utc)::bigint AS timestamp_epoch, region_id
FROM carbon_intensity_regional_hourly
WHERE intensity_source = 'fallback'
  AND timestamp_utc >= %(since)s AND timestamp_utc < %(until)s
ORDER BY region_id, timestamp_utc
