-- The API: the stored national intensity of an hour (or the latest stored).
SELECT h.timestamp_utc, h.intensity_gco2eq_per_kwh, h.intensity_source
FROM reporting.carbon_intensity_hourly h
WHERE %(hour)s::timestamptz IS NULL OR h.timestamp_utc = %(hour)s
ORDER BY h.timestamp_utc DESC
LIMIT 1
