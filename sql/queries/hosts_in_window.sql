-- The most hosts in the record in one of the sampled hours %(hours)s: what a window's chunks are
-- sized by (a lookup of a few hours by the time index, not a scan of the window).
SELECT coalesce(max(hosts), 0) FROM (
  SELECT count(*) AS hosts FROM host_cpu_hourly
  WHERE timestamp_utc = ANY(%(hours)s)
  GROUP BY timestamp_utc
) sampled
