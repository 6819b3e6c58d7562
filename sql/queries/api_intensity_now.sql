-- The API: the half-hour now as last forecast (national, or a site's region beside it), and
-- the latest hour whose actual national intensity is stored.
SELECT n.site, n.region_id, n.period_from, n.period_to, n.national_gco2eq_per_kwh,
       n.national_index, n.regional_gco2eq_per_kwh, n.regional_index, n.issued_at,
       a.timestamp_utc AS last_actual_hour, a.intensity_gco2eq_per_kwh AS last_actual_intensity
FROM (SELECT 1) one
LEFT JOIN LATERAL (
  SELECT * FROM reporting.v_intensity_now v
  WHERE %(site)s::text IS NULL OR v.site = %(site)s
  ORDER BY v.site LIMIT 1
) n ON TRUE
LEFT JOIN LATERAL (
  SELECT h.timestamp_utc, h.intensity_gco2eq_per_kwh FROM reporting.carbon_intensity_hourly h
  WHERE h.intensity_source = 'actual' ORDER BY h.timestamp_utc DESC LIMIT 1
) a ON TRUE
