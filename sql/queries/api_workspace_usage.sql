-- The API: each workspace's usage over [start, end) (one user's, or one workspace), summed
-- from its hourly shares (as carbon_analyst).
SELECT s.workspace_ext_id AS workspace_id, s.hostname, u.ext_user_id AS owner,
       count(f.timestamp_utc) AS hours,
       count(*) FILTER (WHERE f.intensity_source <> 'actual') AS estimated_hours,
       sum(f.busy_cpu_seconds_total) AS busy_cpu_seconds_total,
       sum(f.idle_cpu_seconds_total) AS idle_cpu_seconds_total,
       sum(f.busy_kwh) AS busy_kwh, sum(f.idle_kwh) AS idle_kwh,
       sum(f.busy_kwh + f.idle_kwh) AS total_kwh,
       sum(f.busy_gco2eq) AS busy_gco2eq, sum(f.idle_gco2eq) AS idle_gco2eq,
       sum(f.busy_gco2eq + f.idle_gco2eq) AS total_gco2eq,
       sum(f.memory_kwh) AS memory_kwh, sum(f.overhead_kwh) AS overhead_kwh,
       sum(f.full_kwh) AS full_kwh, sum(f.embodied_gco2eq) AS embodied_gco2eq,
       sum(f.full_gco2eq) AS full_gco2eq, sum(f.regional_gco2eq) AS regional_gco2eq,
       count(f.timestamp_utc) - count(f.full_gco2eq) AS footprint_unknown_hours,
       (SELECT jsonb_object_agg(e.equivalency, sum(f.busy_gco2eq + f.idle_gco2eq) / e.gco2eq_per_unit)
        FROM public.equivalency e) AS equivalencies
FROM public.workspace_session s
JOIN public.dim_user u ON u.user_id = s.user_id
LEFT JOIN public.fact_usage_workspace f
  ON f.workspace_session_id = s.workspace_session_id
 AND f.timestamp_utc >= %(start)s AND f.timestamp_utc < %(end)s
WHERE (%(owner)s::text IS NULL OR u.ext_user_id = %(owner)s)
  AND (%(workspace)s::text IS NULL OR s.workspace_ext_id = %(workspace)s)
  AND s.started_at < %(end)s AND (s.ended_at IS NULL OR s.ended_at > %(start)s)
GROUP BY s.workspace_session_id, s.workspace_ext_id, s.hostname, u.ext_user_id
ORDER BY s.workspace_ext_id
