-- The API: the latest stored forecast for the next hours (national, or a site's region).
SELECT f.area, f.site, f.issued_at, f.period_from, f.period_to, f.forecast_gco2eq_per_kwh, f.intensity_index
FROM reporting.v_forecast_latest f
WHERE f.site IS NOT DISTINCT FROM %(site)s
  AND f.period_from < reporting.reporting_now() + %(hours)s * interval '1 hour'
ORDER BY f.period_from
