-- Quarantined host-hours of [%(start)s, %(end)s), with the reason.
SELECT
  extract(epoch FROM timestamp_utc)::bigint AS timestamp_epoch,
  hostname,
  cloud_project_name,
  machine_name,
  cpu_count,
  busy_cpu_seconds_total,
  idle_cpu_seconds_total,
  memory_gib,
  reason
FROM host_cpu_rejected
WHERE timestamp_utc >= %(start)s AND timestamp_utc < %(end)s
