-- Energy and carbon per host-hour of [%(start)s, %(end)s), with the dimensions' names.
SELECT
  extract(epoch FROM f.timestamp_utc)::bigint AS timestamp_epoch,
  i.hostname,
  p.cloud_project_name,
  m.machine_name,
  f.cpu_count,
  f.busy_cpu_seconds_total,
  f.idle_cpu_seconds_total,
  f.busy_kwh,
  f.idle_kwh,
  f.busy_gco2eq,
  f.idle_gco2eq,
  f.memory_kwh,
  f.overhead_kwh,
  f.full_kwh,
  f.memory_gco2eq,
  f.overhead_gco2eq,
  f.embodied_gco2eq,
  f.full_gco2eq,
  f.regional_gco2eq,
  f.intensity_gco2eq_per_kwh,
  f.intensity_source,
  f.busy_watts_per_core,
  f.idle_watts_per_core
FROM fact_usage_instance f
JOIN dim_instance i USING (instance_id)
JOIN dim_project p USING (project_id)
JOIN dim_machine m USING (machine_id)
WHERE f.timestamp_utc >= %(start)s AND f.timestamp_utc < %(end)s
