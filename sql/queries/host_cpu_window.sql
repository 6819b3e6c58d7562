-- CPU seconds per host-hour of [%(start)s, %(end)s).
SELECT
  extract(epoch FROM timestamp_utc)::bigint AS timestamp_epoch,
  hostname,
  cloud_project_name,
  machine_name,
  cpu_count,
  busy_cpu_seconds_total,
  idle_cpu_seconds_total,
  memory_gib
FROM host_cpu_hourly
WHERE timestamp_utc >= %(start)s AND timestamp_utc < %(end)s
