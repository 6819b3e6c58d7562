-- The API: the platform's latest shown hour ({schema}), its people and its equivalencies;
-- %(since)s, the last day with one (a constant, so that only its month's partition is read).
SELECT h.timestamp_utc, h.users, h.busy_cpu_seconds_total, h.idle_cpu_seconds_total,
       h.busy_kwh, h.idle_kwh, h.busy_gco2eq, h.idle_gco2eq, h.intensity_gco2eq_per_kwh,
       h.intensity_source, h.memory_kwh, h.overhead_kwh, h.full_kwh, h.embodied_gco2eq,
       h.full_gco2eq, h.regional_gco2eq,
       (SELECT jsonb_object_agg(e.equivalency, (h.busy_gco2eq + h.idle_gco2eq) / e.gco2eq_per_unit)
        FROM {schema}.equivalency e) AS equivalencies
FROM {schema}.v_usage_hourly h
WHERE h.scope = 'ada' AND h.timestamp_utc >= %(since)s
ORDER BY h.timestamp_utc DESC
LIMIT 1
