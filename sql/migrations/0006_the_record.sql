-- 0006: the warehouse is the record. Host-hours the record lacks although the host was up
-- (gaps, with their reason), coverage views that tell "no usage" from "no data", and a
-- glossary of column meanings from which every column is commented.

-- ========== GAPS ==========
-- Host-hours missing from host_cpu_hourly and host_cpu_rejected although the host was up
-- (held by a workspace, or reporting before and after), and whole hours ('*') with no host
-- or with a Prometheus answer that warned of partial data. Rewritten per window by every
-- run of host_cpu_seconds; a later answer that fills a gap removes it.
CREATE TABLE host_cpu_gaps (
  timestamp_utc      TIMESTAMPTZ NOT NULL,
  hostname           TEXT NOT NULL,
  cloud_project_name TEXT,
  machine_name       TEXT,
  reason             TEXT NOT NULL,
  PRIMARY KEY (timestamp_utc, hostname)
);

-- ========== COVERAGE ==========
CREATE VIEW v_coverage_hourly AS
SELECT r.timestamp_utc,
       count(DISTINCT r.hostname) FILTER (WHERE r.kind = 'reported') AS hosts_reported,
       count(DISTINCT r.hostname) FILTER (WHERE r.kind = 'rejected') AS hosts_rejected,
       count(*) FILTER (WHERE r.kind = 'missing')                    AS hosts_missing,
       string_agg(DISTINCT r.reason, '; ')                           AS gap_reasons,
       CASE WHEN count(*) FILTER (WHERE r.kind = 'reported') = 0 THEN 'no data'
            WHEN count(*) FILTER (WHERE r.kind <> 'reported') > 0 THEN 'partial'
            ELSE 'complete' END                                      AS coverage
FROM (
  SELECT timestamp_utc, hostname, 'reported'::text AS kind, NULL::text AS reason
  FROM host_cpu_hourly
  UNION ALL
  SELECT timestamp_utc, hostname, 'rejected', 'quarantined: ' || reason FROM host_cpu_rejected
  UNION ALL
  SELECT timestamp_utc, hostname, CASE WHEN hostname = '*' THEN 'hour' ELSE 'missing' END, reason
  FROM host_cpu_gaps
) r
GROUP BY r.timestamp_utc;

CREATE VIEW v_coverage_daily AS
SELECT (timestamp_utc AT TIME ZONE 'UTC')::date              AS day,
       count(*)                                             AS hours,
       count(*) FILTER (WHERE coverage = 'complete')        AS hours_complete,
       count(*) FILTER (WHERE coverage = 'partial')         AS hours_partial,
       count(*) FILTER (WHERE coverage = 'no data')         AS hours_without_data,
       sum(hosts_reported)                                  AS host_hours_reported,
       sum(hosts_rejected)                                  AS host_hours_rejected,
       sum(hosts_missing)                                   AS host_hours_missing
FROM v_coverage_hourly
GROUP BY 1;

GRANT SELECT ON host_cpu_gaps, v_coverage_hourly, v_coverage_daily TO carbon_analyst;

-- ========== A GLOSSARY OF COLUMNS ==========
-- One meaning for a column name wherever it appears, taken first from the comments the
-- earlier migrations wrote; each later migration adds its own and calls
-- carbon_document_columns() to comment every column that has none.
CREATE TABLE column_glossary (
  column_name TEXT PRIMARY KEY,
  meaning     TEXT NOT NULL
);
INSERT INTO column_glossary (column_name, meaning)
SELECT DISTINCT ON (a.attname) a.attname, col_description(a.attrelid, a.attnum)
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public'
WHERE a.attnum > 0 AND NOT a.attisdropped AND col_description(a.attrelid, a.attnum) IS NOT NULL
ORDER BY a.attname, c.relname;

INSERT INTO column_glossary (column_name, meaning) VALUES
  ('reason', 'Why the row is there: why a host-hour was quarantined, or why a gap is missing data.'),
  ('hosts_reported', 'Hosts whose CPU seconds for the hour are in the record.'),
  ('hosts_rejected', 'Hosts whose numbers for the hour were impossible and quarantined (host_cpu_rejected).'),
  ('hosts_missing', 'Hosts known to be up in the hour (held by a workspace, or reporting before and after) with no data for it.'),
  ('gap_reasons', 'Why data is missing or partial in the hour (NULL when complete).'),
  ('coverage', 'complete (every host known to be up reported), partial (some missing, quarantined or warned about) or no data.'),
  ('hours_complete', 'Hours of the day whose coverage is complete [h].'),
  ('hours_partial', 'Hours of the day with some host-hours missing, quarantined or warned about [h].'),
  ('hours_without_data', 'Hours of the day with no host reported [h].'),
  ('host_hours_reported', 'Host-hours in the record [host-h].'),
  ('host_hours_rejected', 'Host-hours quarantined for impossible numbers [host-h].'),
  ('host_hours_missing', 'Host-hours known to be up but with no data [host-h].'),
  ('column_name', 'A column name used in the warehouse.'),
  ('meaning', 'What the column holds, with its unit.')
ON CONFLICT (column_name) DO UPDATE SET meaning = EXCLUDED.meaning;

CREATE FUNCTION carbon_document_columns() RETURNS VOID
LANGUAGE plpgsql SET search_path = pg_catalog, public AS $$
DECLARE
  c RECORD;
BEGIN
  FOR c IN
    SELECT cl.relname, a.attname, g.meaning
    FROM pg_class cl
    JOIN pg_namespace n ON n.oid = cl.relnamespace AND n.nspname = 'public'
    JOIN pg_attribute a ON a.attrelid = cl.oid AND a.attnum > 0 AND NOT a.attisdropped
    JOIN column_glossary g ON g.column_name = a.attname
    WHERE cl.relkind IN ('r', 'p', 'v') AND NOT cl.relispartition
      AND col_description(cl.oid, a.attnum) IS NULL
  LOOP
    EXECUTE format('COMMENT ON COLUMN public.%I.%I IS %L', c.relname, c.attname, c.meaning);
  END LOOP;
END;
$$;
REVOKE EXECUTE ON FUNCTION carbon_document_columns() FROM PUBLIC;
SELECT carbon_document_columns();

GRANT SELECT ON column_glossary TO carbon_analyst;
COMMENT ON TABLE host_cpu_gaps IS 'Host-hours with no data although the host was up, and whole hours without data or with partial answers (hostname *), with the reason.';
COMMENT ON VIEW v_coverage_hourly IS 'Per hour: hosts reported, quarantined and missing, and whether the hour''s data is complete, partial or absent. Tells "no usage" from "no data".';
COMMENT ON VIEW v_coverage_daily IS 'Per UTC day: hours complete, partial and without data, and host-hours reported, quarantined and missing.';
COMMENT ON TABLE column_glossary IS 'What every column name means, with its unit: the source of the column comments.';
COMMENT ON COLUMN host_cpu_gaps.hostname IS 'Host identity, normalised; * when the gap concerns the whole hour.';
COMMENT ON COLUMN v_coverage_daily.hours IS 'Hours of the day the record covers (with data or known gaps) [h].';
