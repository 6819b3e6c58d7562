-- 0012: windows lock what conflicts, not the month.
-- A window's transaction locks one write_lock row per table set and hour (named
-- 'write:<tables>:<YYYY-MM-DDTHH>', made by the pipeline as it needs them), so two windows
-- wait for each other only where their hours overlap. Before, a row per table set and month
-- made adjacent windows of one month take turns; those rows go.
DELETE FROM public.write_lock WHERE name ~ '^write:.*:[0-9]{4}-[0-9]{2}$';

-- Partitions: a window locks creation only when a partition it needs is missing (the first
-- window of a month, which also creates the next month's ahead of time). Every other window
-- checks and goes on, without waiting for anyone.
CREATE OR REPLACE FUNCTION public.carbon_ensure_month_partitions(parent TEXT, from_ts TIMESTAMPTZ, to_ts TIMESTAMPTZ)
RETURNS VOID LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  first_month TIMESTAMPTZ := date_trunc('month', from_ts AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
  month_start TIMESTAMPTZ;
  month_end   TIMESTAMPTZ;
  part_name   TEXT;
  missing     BOOLEAN := FALSE;
BEGIN
  month_start := first_month;
  WHILE month_start < to_ts AND NOT missing LOOP
    part_name := format('%s_y%sm%s', parent,
                        to_char(month_start AT TIME ZONE 'UTC', 'YYYY'),
                        to_char(month_start AT TIME ZONE 'UTC', 'MM'));
    missing := to_regclass(format('public.%I', part_name)) IS NULL;
    month_start := ((month_start AT TIME ZONE 'UTC') + INTERVAL '1 month') AT TIME ZONE 'UTC';
  END LOOP;
  IF NOT missing THEN
    RETURN;
  END IF;
  -- Two runs creating the same partition at once would collide: serialise creation, by a
  -- table lock (no reading role may take it), not a row lock: acquiring a table lock makes
  -- this session see the partitions another created while it waited (a row lock does not,
  -- and the lookup above may have cached their absence).
  LOCK TABLE public.write_lock IN SHARE UPDATE EXCLUSIVE MODE;
  month_start := first_month;
  WHILE month_start < to_ts LOOP
    month_end := ((month_start AT TIME ZONE 'UTC') + INTERVAL '1 month') AT TIME ZONE 'UTC';
    part_name := format('%s_y%sm%s', parent,
                        to_char(month_start AT TIME ZONE 'UTC', 'YYYY'),
                        to_char(month_start AT TIME ZONE 'UTC', 'MM'));
    IF to_regclass(format('public.%I', part_name)) IS NULL THEN
      EXECUTE format('CREATE TABLE public.%I (LIKE public.%I INCLUDING DEFAULTS INCLUDING CONSTRAINTS)',
                     part_name, parent);
      -- The bound as a constraint spares ATTACH its validating scan.
      EXECUTE format('ALTER TABLE public.%I ADD CONSTRAINT %I CHECK (timestamp_utc >= %L AND timestamp_utc < %L)',
                     part_name, part_name || '_bound', month_start, month_end);
      EXECUTE format('ALTER TABLE public.%I ATTACH PARTITION public.%I FOR VALUES FROM (%L) TO (%L)',
                     parent, part_name, month_start, month_end);
    END IF;
    month_start := month_end;
  END LOOP;
END;
$$;
REVOKE EXECUTE ON FUNCTION public.carbon_ensure_month_partitions(TEXT, TIMESTAMPTZ, TIMESTAMPTZ) FROM PUBLIC;
COMMENT ON TABLE public.write_lock IS 'The pipeline''s write locks: a writer locks its rows for its transaction (one per table set and hour of its window), and the table itself while it creates a missing partition. Internal.';
