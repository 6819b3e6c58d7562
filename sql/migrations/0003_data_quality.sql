-- 0003: what the data-quality checks need: a count of rejected glitch actuals per intensity
-- hour, and a quarantine for host-hours Prometheus answered with impossible numbers.

-- Half-hour periods of the hour whose `actual` was rejected as a glitch (0 while the
-- forecast was far above) and replaced by the forecast.
ALTER TABLE carbon_intensity_hourly ADD COLUMN glitch_periods INTEGER NOT NULL DEFAULT 0;

-- Host-hours left out of every fact because Prometheus' numbers for them cannot be true
-- (not finite, negative, or more CPU seconds than the host's cpus have in an hour).
CREATE TABLE host_cpu_rejected (
  timestamp_utc          TIMESTAMPTZ NOT NULL,
  hostname               TEXT NOT NULL,
  cloud_project_name     TEXT NOT NULL,
  machine_name           TEXT NOT NULL,
  cpu_count              INTEGER NOT NULL,
  busy_cpu_seconds_total DOUBLE PRECISION,
  idle_cpu_seconds_total DOUBLE PRECISION,
  reason                 TEXT NOT NULL,
  PRIMARY KEY (timestamp_utc, hostname, cloud_project_name, machine_name)
);
