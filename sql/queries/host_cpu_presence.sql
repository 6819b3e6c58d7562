-- Which hosts are in the record (plausible or quarantined) in the hours of [%(start)s, %(end)s).
SELECT extract(epoch FROM timestamp_utc)::bigint AS timestamp_epoch, hostname, cloud_project_name, machine_name
FROM host_cpu_hourly
WHERE timestamp_utc >= %(start)s AND timestamp_utc < %(end)s
UNION ALL
SELECT extract(epoch FROM timestamp_utc)::bigint, hostname, cloud_project_name, machine_name
FROM host_cpu_rejected
WHERE timestamp_utc >= %(start)s AND timestamp_utc < %(end)s
