-- 0005: monthly partitions created beside their table and attached (ATTACH PARTITION takes
-- a SHARE UPDATE EXCLUSIVE lock on the parent: readers and writers of other months go on,
-- where CREATE TABLE ... PARTITION OF took ACCESS EXCLUSIVE); and "as of" stamps so that
-- backfilling an old window never rewinds a host's or a session's latest labels.

CREATE OR REPLACE FUNCTION carbon_ensure_month_partitions(parent TEXT, from_ts TIMESTAMPTZ, to_ts TIMESTAMPTZ)
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
      EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS INCLUDING CONSTRAINTS)',
                     part_name, parent);
      -- The bound as a constraint spares ATTACH its validating scan.
      EXECUTE format('ALTER TABLE %I ADD CONSTRAINT %I CHECK (timestamp_utc >= %L AND timestamp_utc < %L)',
                     part_name, part_name || '_bound', month_start, month_end);
      EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                     parent, part_name, month_start, month_end);
    END IF;
    month_start := month_end;
  END LOOP;
END;
$$;
REVOKE EXECUTE ON FUNCTION carbon_ensure_month_partitions(TEXT, TIMESTAMPTZ, TIMESTAMPTZ) FROM PUBLIC;

ALTER TABLE dim_instance ADD COLUMN labels_as_of TIMESTAMPTZ;
ALTER TABLE workspace_session ADD COLUMN labels_as_of TIMESTAMPTZ;
COMMENT ON COLUMN dim_instance.labels_as_of IS 'Start of the hour the labels were last seen in.';
COMMENT ON COLUMN workspace_session.labels_as_of IS 'Start of the hour machine, project and group were last seen in.';
