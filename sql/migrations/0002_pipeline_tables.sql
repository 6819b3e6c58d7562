-- 0002: what the pipeline adds to the seed schema: the staging and host-level tables,
-- provenance columns, the reserved 'unattributed' user, the ada views and the helper that
-- creates monthly partitions on demand. Nothing of the seed is renamed.

-- Creates the monthly partitions of a range-partitioned table that cover [from_ts, to_ts).
-- Partitions are named <parent>_yYYYYmMM and hold whole UTC months.
CREATE FUNCTION carbon_ensure_month_partitions(parent TEXT, from_ts TIMESTAMPTZ, to_ts TIMESTAMPTZ)
RETURNS VOID LANGUAGE plpgsql AS $$
DECLARE
  month_start TIMESTAMPTZ := date_trunc('month', from_ts AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
  month_end   TIMESTAMPTZ;
  part_name   TEXT;
BEGIN
  -- Two runs creating the same partition at once would collide: serialise creation.
  PERFORM pg_advisory_xact_lock(hashtext('carbon_ensure_month_partitions'));
  WHILE month_start < to_ts LOOP
    month_end := ((month_start AT TIME ZONE 'UTC') + INTERVAL '1 month') AT TIME ZONE 'UTC';
    part_name := format('%s_y%sm%s', parent,
                        to_char(month_start AT TIME ZONE 'UTC', 'YYYY'),
                        to_char(month_start AT TIME ZONE 'UTC', 'MM'));
    IF to_regclass(part_name) IS NULL THEN
      EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)',
                     part_name, parent, month_start, month_end);
    END IF;
    month_start := month_end;
  END LOOP;
END;
$$;

-- ========== DIMENSIONS: additions ==========
ALTER TABLE dim_group
  ADD COLUMN cloud_project_name TEXT,
  ADD COLUMN machine_name       TEXT,
  ADD COLUMN attributes         JSONB NOT NULL DEFAULT '{}';

INSERT INTO dim_user (ext_user_id, display_name)
VALUES ('unattributed', 'Unattributed (no workspace held the host)')
ON CONFLICT (ext_user_id) DO NOTHING;

-- ========== CARBON INTENSITY ==========
CREATE TABLE carbon_intensity_hourly (
  timestamp_utc            TIMESTAMPTZ PRIMARY KEY,
  intensity_gco2eq_per_kwh DOUBLE PRECISION NOT NULL,
  intensity_source         TEXT NOT NULL CHECK (intensity_source IN ('actual', 'forecast', 'fallback')),
  forecast_gco2eq_per_kwh  DOUBLE PRECISION,
  actual_gco2eq_per_kwh    DOUBLE PRECISION,
  period_count             INTEGER NOT NULL
);

-- ========== HOST LEVEL ==========
-- CPU seconds per host-hour as Prometheus reports them (hostname normalised).
CREATE TABLE host_cpu_hourly (
  timestamp_utc          TIMESTAMPTZ NOT NULL,
  hostname               TEXT NOT NULL,
  cloud_project_name     TEXT NOT NULL,
  machine_name           TEXT NOT NULL,
  cpu_count              INTEGER NOT NULL,
  busy_cpu_seconds_total DOUBLE PRECISION NOT NULL,
  idle_cpu_seconds_total DOUBLE PRECISION NOT NULL,
  PRIMARY KEY (timestamp_utc, hostname, cloud_project_name, machine_name)
) PARTITION BY RANGE (timestamp_utc);

-- Energy and carbon per host-hour: the finest grain every scope fact is summed from.
-- Its ids come from the dimensions, written in the same transaction. It has no foreign keys:
-- checking four of them per row made a year's COPY four times slower (2.4 s -> 10.7 s for
-- 761 k rows, measured here), and this is the table with a row per host and hour.
CREATE TABLE fact_usage_instance (
  instance_id              BIGINT NOT NULL,
  project_id               BIGINT NOT NULL,
  machine_id               BIGINT NOT NULL,
  group_id                 BIGINT NOT NULL,
  timestamp_utc            TIMESTAMPTZ NOT NULL,
  cpu_count                INTEGER NOT NULL,
  busy_cpu_seconds_total   DOUBLE PRECISION NOT NULL,
  idle_cpu_seconds_total   DOUBLE PRECISION NOT NULL,
  busy_kwh                 DOUBLE PRECISION NOT NULL,
  idle_kwh                 DOUBLE PRECISION NOT NULL,
  busy_gco2eq              DOUBLE PRECISION NOT NULL,
  idle_gco2eq              DOUBLE PRECISION NOT NULL,
  intensity_gco2eq_per_kwh DOUBLE PRECISION NOT NULL,
  intensity_source         TEXT NOT NULL,
  busy_watts_per_core      DOUBLE PRECISION NOT NULL,
  idle_watts_per_core      DOUBLE PRECISION NOT NULL,
  PRIMARY KEY (instance_id, project_id, machine_id, timestamp_utc)
) PARTITION BY RANGE (timestamp_utc);
CREATE INDEX idx_fact_instance_ts ON fact_usage_instance (timestamp_utc DESC);

-- ========== PROVENANCE ==========
ALTER TABLE fact_usage_ada     ADD COLUMN intensity_source TEXT;
ALTER TABLE fact_usage_project ADD COLUMN intensity_source TEXT;
ALTER TABLE fact_usage_machine ADD COLUMN intensity_source TEXT;
ALTER TABLE fact_usage_user    ADD COLUMN intensity_source TEXT;
ALTER TABLE fact_usage_group   ADD COLUMN intensity_source TEXT;

-- ========== ADA VIEWS (the seed has them for every other scope) ==========
CREATE VIEW v_ada_total AS
SELECT
  SUM(f.busy_cpu_seconds_total) AS busy_cpu_seconds_total,
  SUM(f.idle_cpu_seconds_total) AS idle_cpu_seconds_total,
  SUM(f.busy_kwh)               AS busy_kwh,
  SUM(f.idle_kwh)               AS idle_kwh,
  SUM(f.busy_gco2eq)            AS busy_gco2eq,
  SUM(f.idle_gco2eq)            AS idle_gco2eq
FROM fact_usage_ada f;

CREATE VIEW v_ada_averages AS
SELECT
  AVG(f.busy_kwh)                 AS energy_kwh_busy_avg,
  AVG(f.idle_kwh)                 AS energy_kwh_idle_avg,
  AVG(f.busy_gco2eq)              AS carbon_gco2eq_busy_avg,
  AVG(f.idle_gco2eq)              AS carbon_gco2eq_idle_avg,
  AVG(f.intensity_gco2eq_per_kwh) AS intensity_gco2eq_per_kwh_avg
FROM fact_usage_ada f;
