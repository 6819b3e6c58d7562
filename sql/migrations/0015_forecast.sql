-- 0015: greener choices. The API's 48-hour forecasts kept as a record (every half-hour of
-- every fetch, with the half-hour it was issued for: forecast vintages, never overwritten),
-- the views and the function that tell a user when to run, how good the forecast has been,
-- and what shifting each day's busy work to the day's greenest hour would have saved.

-- ========== THE RECORD OF FORECASTS ==========
CREATE TABLE public.intensity_forecast (
  region_id               INTEGER NOT NULL CHECK (region_id BETWEEN 0 AND 17),
  issued_at               TIMESTAMPTZ NOT NULL,
  period_from             TIMESTAMPTZ NOT NULL,
  forecast_gco2eq_per_kwh DOUBLE PRECISION NOT NULL CHECK (forecast_gco2eq_per_kwh >= 0),
  intensity_index         TEXT,
  PRIMARY KEY (region_id, issued_at, period_from),
  CHECK (period_from >= issued_at),
  CHECK (extract(epoch FROM issued_at)::bigint % 1800 = 0),
  CHECK (extract(epoch FROM period_from)::bigint % 1800 = 0)
);
-- The latest forecast of each period (the error view's "final forecast", the latest vintage).
CREATE INDEX intensity_forecast_period ON public.intensity_forecast (region_id, period_from, issued_at);

CREATE TABLE public.forecast_fetch (
  region_id  INTEGER NOT NULL CHECK (region_id BETWEEN 0 AND 17),
  issued_at  TIMESTAMPTZ NOT NULL,
  fetched_at TIMESTAMPTZ NOT NULL,
  periods    INTEGER NOT NULL,
  stored     INTEGER NOT NULL,
  error      TEXT,
  PRIMARY KEY (region_id, issued_at, fetched_at)
);

CREATE TABLE public.forecast_site (
  site       TEXT PRIMARY KEY,
  region_id  INTEGER NOT NULL CHECK (region_id BETWEEN 1 AND 17)
);

COMMENT ON TABLE public.intensity_forecast IS 'Every half-hour of every 48-hour forecast the pipeline fetched from the Carbon Intensity API (national: region_id 0; each site''s GB region), with the half-hour it was issued for. A vintage is never overwritten: a second fetch for the same half-hour keeps the first.';
COMMENT ON TABLE public.forecast_fetch IS 'Every fetch of a forecast: when, for which half-hour and region, how many periods the API gave and how many were new, or the error that stopped it (after its retries).';
COMMENT ON TABLE public.forecast_site IS 'The configured sites and their GB region (CARBON_SITES_FILE, or CARBON_SITE / CARBON_SITE_REGION_ID), as of the last forecast fetch: what greenest_window and the forecast views name.';

INSERT INTO public.column_glossary (column_name, meaning) VALUES
  ('issued_at', 'The half-hour (UTC) a forecast was fetched in and asked from: its vintage.'),
  ('period_from', 'Start of a half-hour period (UTC); it ends 30 minutes later.'),
  ('period_to', 'End of a half-hour period (UTC).'),
  ('intensity_index', 'The API''s band for the intensity: very low, low, moderate, high, very high.'),
  ('fetched_at', 'When the pipeline asked the API.'),
  ('periods', 'Half-hour periods the answer gave for the 48 hours from issued_at.'),
  ('stored', 'Periods stored from the answer (0 when its vintage was already stored).'),
  ('error', 'Why the fetch failed, after its retries (NULL: it did not).'),
  ('area', 'national (GB) or regional (the site''s GB region).'),
  ('national_gco2eq_per_kwh', 'GB national forecast intensity of the period [gCO2eq/kWh].'),
  ('national_index', 'The API''s band for the national intensity.'),
  ('regional_gco2eq_per_kwh', 'Forecast intensity of the site''s GB region for the period [gCO2eq/kWh].'),
  ('regional_index', 'The API''s band for the regional intensity.'),
  ('lead_from_hours', 'Lead time bucket start: how long before the period (national: the hour) began the forecast was issued [h].'),
  ('lead_to_hours', 'Lead time bucket end [h] (exclusive).'),
  ('truth', 'What the forecasts are compared with: actual (national, the stored hour''s actual intensity) or final forecast (regional, the last forecast issued before the period began).'),
  ('compared', 'Forecast values compared in the bucket.'),
  ('mean_absolute_error', 'Mean of |forecast - truth| [gCO2eq/kWh].'),
  ('bias', 'Mean of forecast - truth [gCO2eq/kWh]: positive, the forecast was too high.'),
  ('days', 'UTC days counted [d].'),
  ('greenest_days', 'Days whose greenest hour is known from the stored intensity [d].'),
  ('shifted_busy_gco2eq', 'Carbon of the busy electricity had each day''s busy kWh run in that day''s greenest hour (lowest stored national intensity of the UTC day) [gCO2eq]; capacity ignored.'),
  ('shifting_saving_gco2eq', 'busy_gco2eq - shifted_busy_gco2eq [gCO2eq]: an upper bound on what shifting busy work within each day would have saved.'),
  ('shifting_saving_share', 'shifting_saving_gco2eq / busy_gco2eq [0-1].')
ON CONFLICT (column_name) DO UPDATE SET meaning = EXCLUDED.meaning;

-- ========== FOR PEOPLE DECIDING NOW ==========
-- The latest vintage of each region issued at or before reporting_now(), its periods not yet
-- over and within 48 hours: national rows (site NULL) and each site's regional rows.
CREATE VIEW public.v_forecast_latest AS
WITH vintage AS (
  SELECT f.region_id, max(f.issued_at) AS issued_at
  FROM public.intensity_forecast f
  WHERE f.issued_at <= public.reporting_now() AND f.issued_at > public.reporting_now() - interval '48 hours'
  GROUP BY f.region_id
),
area AS (
  SELECT 'national'::text AS area, NULL::text AS site, 0 AS region_id
  UNION ALL
  SELECT 'regional', s.site, s.region_id FROM public.forecast_site s
)
SELECT a.area, a.site, a.region_id, f.issued_at, f.period_from,
       f.period_from + interval '30 minutes' AS period_to,
       f.forecast_gco2eq_per_kwh, f.intensity_index
FROM area a
JOIN vintage v ON v.region_id = a.region_id
JOIN public.intensity_forecast f ON f.region_id = v.region_id AND f.issued_at = v.issued_at
WHERE f.period_from + interval '30 minutes' > public.reporting_now()
  AND f.period_from < public.reporting_now() + interval '48 hours';
COMMENT ON VIEW public.v_forecast_latest IS 'The next 48 hours as last forecast: each half-hour of the latest stored vintage, national (site NULL) and for each site''s region, from the half-hour now on (reporting_now()).';

CREATE VIEW public.v_intensity_now AS
SELECT s.site, s.region_id, n.period_from, n.period_to,
       n.forecast_gco2eq_per_kwh AS national_gco2eq_per_kwh, n.intensity_index AS national_index,
       r.forecast_gco2eq_per_kwh AS regional_gco2eq_per_kwh, r.intensity_index AS regional_index,
       n.issued_at
FROM public.forecast_site s
LEFT JOIN public.v_forecast_latest n
  ON n.area = 'national' AND n.period_from <= public.reporting_now() AND n.period_to > public.reporting_now()
LEFT JOIN public.v_forecast_latest r
  ON r.area = 'regional' AND r.site = s.site AND r.period_from <= public.reporting_now() AND r.period_to > public.reporting_now();
COMMENT ON VIEW public.v_intensity_now IS 'The current half-hour at each site, as last forecast: the national and the site''s regional intensity, with the API''s bands. NULL when no stored forecast covers now (the forecast schedule is off or failing: see forecast_fetch).';

-- The Carbon Aware SDK's question from our own stored forecast: for a job of `duration`
-- (rounded up to whole half-hours) that must end within `within` of the current half-hour,
-- the `best` start times by mean forecast intensity (ties: the earlier), with the saving
-- against starting in the current half-hour. `site` NULL: the national forecast.
CREATE FUNCTION public.greenest_window(
  duration INTERVAL,
  site TEXT DEFAULT NULL,
  within INTERVAL DEFAULT interval '48 hours',
  at TIMESTAMPTZ DEFAULT NULL,
  best INTEGER DEFAULT 5
)
RETURNS TABLE (
  rank BIGINT, start_at TIMESTAMPTZ, end_at TIMESTAMPTZ, mean_gco2eq_per_kwh DOUBLE PRECISION,
  now_gco2eq_per_kwh DOUBLE PRECISION, saving_gco2eq_per_kwh DOUBLE PRECISION,
  saving_share DOUBLE PRECISION, region_id INTEGER, issued_at TIMESTAMPTZ
)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  now_ts TIMESTAMPTZ := coalesce(at, public.reporting_now());
  now_slot TIMESTAMPTZ := date_bin(interval '30 minutes', coalesce(at, public.reporting_now()), TIMESTAMPTZ '2000-01-01 00:00+00');
  slots INTEGER;
  region INTEGER := 0;
  vintage TIMESTAMPTZ;
BEGIN
  IF duration IS NULL OR duration <= interval '0' THEN
    RAISE EXCEPTION 'greenest_window: duration must be positive, got %', duration;
  END IF;
  IF within IS NULL OR within < duration THEN
    RAISE EXCEPTION 'greenest_window: within (%) must be at least the duration (%)', within, duration;
  END IF;
  IF best IS NULL OR best < 1 THEN
    RAISE EXCEPTION 'greenest_window: best must be at least 1, got %', best;
  END IF;
  slots := ceil(extract(epoch FROM duration) / 1800)::integer;
  IF site IS NOT NULL THEN
    SELECT s.region_id INTO region FROM public.forecast_site s WHERE s.site = greenest_window.site;
    IF NOT FOUND THEN
      RAISE EXCEPTION 'greenest_window: unknown site %; the sites are: %', site,
        coalesce((SELECT string_agg(s.site, ', ' ORDER BY s.site) FROM public.forecast_site s), 'none (no forecast fetched yet)');
    END IF;
  END IF;
  SELECT max(f.issued_at) INTO vintage
  FROM public.intensity_forecast f
  WHERE f.region_id = region AND f.issued_at <= now_ts;
  IF vintage IS NULL OR vintage < now_slot - interval '24 hours' THEN
    RAISE EXCEPTION 'greenest_window: no forecast for % issued in the 24 hours before % (latest: %); is the forecast schedule running?',
      coalesce(site, 'GB (national)'), now_ts, coalesce(vintage::text, 'none');
  END IF;
  RETURN QUERY
  WITH periods AS (
    SELECT f.period_from, f.forecast_gco2eq_per_kwh AS g
    FROM public.intensity_forecast f
    WHERE f.region_id = region AND f.issued_at = vintage
      AND f.period_from >= now_slot AND f.period_from < now_slot + within
  ),
  windows AS (
    SELECT p.period_from AS s,
           avg(p.g) OVER ahead AS m,
           count(*) OVER ahead AS n,
           max(p.period_from) OVER ahead AS last_from
    FROM periods p
    WINDOW ahead AS (ORDER BY p.period_from ROWS BETWEEN CURRENT ROW AND slots - 1 FOLLOWING)
  ),
  whole AS (
    -- Only windows of `slots` consecutive half-hours that end within the horizon.
    SELECT w.s, w.m FROM windows w
    WHERE w.n = slots AND w.last_from = w.s + (slots - 1) * interval '30 minutes'
      AND w.s + slots * interval '30 minutes' <= now_slot + within
  ),
  now_window AS (SELECT w.m FROM whole w WHERE w.s = now_slot)
  SELECT row_number() OVER (ORDER BY w.m, w.s), w.s, w.s + slots * interval '30 minutes', w.m,
         nw.m, nw.m - w.m, (nw.m - w.m) / nullif(nw.m, 0), region, vintage
  FROM whole w LEFT JOIN now_window nw ON TRUE
  ORDER BY w.m, w.s
  LIMIT best;
END;
$$;
COMMENT ON FUNCTION public.greenest_window(INTERVAL, TEXT, INTERVAL, TIMESTAMPTZ, INTEGER) IS 'The best start times for a job of `duration` (rounded up to half-hours) ending within `within` of now (or `at`), at `site` (NULL: GB national), by mean forecast intensity of the latest stored vintage, with the saving against starting now: the Carbon Aware SDK''s answer from the stored forecast.';

-- ========== HOW GOOD THE FORECAST IS ==========
-- National: a vintage's two half-hours of an hour, averaged, against the hour's actual as
-- carbon_intensity_hourly stores it (both periods actual). Regional (the API publishes no
-- regional actuals): each half-hour against its final forecast, the last vintage issued at or
-- before the period began, compared with the earlier vintages only. Lead time in half-hour
-- buckets. The sums per UTC day of the compared period (hour) are kept, so that the view reads
-- days x regions x buckets, not every vintage: both writers of its inputs refresh the days
-- they touch (the forecast stage the days of its horizon, the intensity stage its window's).
CREATE TABLE public.forecast_error_daily (
  day            DATE NOT NULL,
  region_id      INTEGER NOT NULL CHECK (region_id BETWEEN 0 AND 17),
  lead_bucket    INTEGER NOT NULL CHECK (lead_bucket >= 0),
  compared       BIGINT NOT NULL,
  abs_error_sum  DOUBLE PRECISION NOT NULL,
  error_sum      DOUBLE PRECISION NOT NULL,
  PRIMARY KEY (day, region_id, lead_bucket)
);
COMMENT ON TABLE public.forecast_error_daily IS 'Sums of forecast errors per UTC day of the compared period, region and lead time bucket (half-hours): what v_forecast_error reads. Refreshed for the days a forecast fetch or an intensity run touches (carbon_refresh_forecast_error).';
INSERT INTO public.column_glossary (column_name, meaning) VALUES
  ('lead_bucket', 'Lead time in half-hours: floor((period start - issued_at) / 30 min).'),
  ('abs_error_sum', 'Sum of |forecast - truth| over the compared values [gCO2eq/kWh].'),
  ('error_sum', 'Sum of forecast - truth over the compared values [gCO2eq/kWh].'),
  ('day', 'UTC calendar day.')
ON CONFLICT (column_name) DO NOTHING;

CREATE FUNCTION public.carbon_refresh_forecast_error(from_ts TIMESTAMPTZ, to_ts TIMESTAMPTZ)
RETURNS INTEGER
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp SET jit = off AS $$
DECLARE
  first_day DATE := (from_ts AT TIME ZONE 'UTC')::date;
  end_day DATE := ((to_ts - interval '1 microsecond') AT TIME ZONE 'UTC')::date + 1;
  lo TIMESTAMPTZ := first_day::timestamp AT TIME ZONE 'UTC';
  hi TIMESTAMPTZ := end_day::timestamp AT TIME ZONE 'UTC';
  written INTEGER;
BEGIN
  -- One refresh at a time: a fetch and an intensity run may touch the same days.
  PERFORM pg_advisory_xact_lock(13005);
  DELETE FROM public.forecast_error_daily e WHERE e.day >= first_day AND e.day < end_day;
  INSERT INTO public.forecast_error_daily (day, region_id, lead_bucket, compared, abs_error_sum, error_sum)
  WITH national AS (
    SELECT f.issued_at, date_bin(interval '1 hour', f.period_from, TIMESTAMPTZ '2000-01-01 00:00+00') AS hour_start,
           avg(f.forecast_gco2eq_per_kwh) AS forecast
    FROM public.intensity_forecast f
    WHERE f.region_id = 0 AND f.period_from >= lo AND f.period_from < hi
    GROUP BY 1, 2
    HAVING count(*) = 2
  ),
  final AS (
    SELECT DISTINCT ON (f.region_id, f.period_from) f.region_id, f.period_from, f.issued_at,
           f.forecast_gco2eq_per_kwh
    FROM public.intensity_forecast f
    WHERE f.region_id > 0 AND f.period_from >= lo AND f.period_from < hi
    ORDER BY f.region_id, f.period_from, f.issued_at DESC
  ),
  pairs AS (
    SELECT n.hour_start AS compared_at, 0 AS region_id, n.hour_start - n.issued_at AS lead,
           n.forecast - h.intensity_gco2eq_per_kwh AS error
    FROM national n
    JOIN public.carbon_intensity_hourly h
      ON h.timestamp_utc = n.hour_start AND h.intensity_source = 'actual' AND h.period_count = 2
    UNION ALL
    SELECT f.period_from, f.region_id, f.period_from - f.issued_at,
           f.forecast_gco2eq_per_kwh - l.forecast_gco2eq_per_kwh
    FROM public.intensity_forecast f
    JOIN final l ON l.region_id = f.region_id AND l.period_from = f.period_from AND f.issued_at < l.issued_at
  )
  SELECT (p.compared_at AT TIME ZONE 'UTC')::date, p.region_id,
         floor(extract(epoch FROM p.lead) / 1800)::integer,
         count(*), sum(abs(p.error)), sum(p.error)
  FROM pairs p
  GROUP BY 1, 2, 3;
  GET DIAGNOSTICS written = ROW_COUNT;
  RETURN written;
END;
$$;
REVOKE EXECUTE ON FUNCTION public.carbon_refresh_forecast_error(TIMESTAMPTZ, TIMESTAMPTZ) FROM PUBLIC;
COMMENT ON FUNCTION public.carbon_refresh_forecast_error(TIMESTAMPTZ, TIMESTAMPTZ) IS 'Recomputes forecast_error_daily for every UTC day touching [from_ts, to_ts) from the stored forecasts and hourly intensity; returns the rows written. The forecast and intensity stages call it for the days they touch; after a change made outside them, call it over the range changed.';

CREATE VIEW public.v_forecast_error AS
SELECT CASE WHEN e.region_id = 0 THEN 'national' ELSE 'regional' END AS area,
       CASE WHEN e.region_id = 0 THEN NULL
            ELSE (SELECT string_agg(s.site, ', ' ORDER BY s.site) FROM public.forecast_site s WHERE s.region_id = e.region_id)
       END AS site,
       e.region_id,
       CASE WHEN e.region_id = 0 THEN 'actual' ELSE 'final forecast' END AS truth,
       e.lead_bucket / 2.0 AS lead_from_hours, (e.lead_bucket + 1) / 2.0 AS lead_to_hours,
       sum(e.compared)::bigint AS compared,
       sum(e.abs_error_sum) / sum(e.compared) AS mean_absolute_error,
       sum(e.error_sum) / sum(e.compared) AS bias
FROM public.forecast_error_daily e
GROUP BY e.region_id, e.lead_bucket;
COMMENT ON VIEW public.v_forecast_error IS 'How far ahead the forecast can be trusted: mean absolute error and bias by lead time (half-hour buckets to 48 h) and area. National forecasts against the stored actuals (an hour''s two half-hours averaged, hours with both actuals); regional ones (no actuals published) against the final forecast, the last issued before the period began.';

-- ========== WHAT SHIFTING WOULD HAVE SAVED ==========
-- Per scope entity and month: the carbon of its busy CPU energy as it ran (the seed's
-- busy_gco2eq, national intensity), and as if each day's busy kWh had run in that UTC day's
-- greenest hour (the lowest stored national intensity of the day). Capacity is ignored, so the
-- saving is an upper bound. Reads the daily rollups and the stored hourly intensity.
-- One definition for analysts (every scope) and carbon_reporter (its aggregate rows).
DO $$
DECLARE
  body CONSTANT TEXT := $q$
WITH greenest AS (
  SELECT (h.timestamp_utc AT TIME ZONE 'UTC')::date AS day, min(h.intensity_gco2eq_per_kwh) AS g
  FROM public.carbon_intensity_hourly h
  GROUP BY 1
)
SELECT r.scope, r.scope_id, r.scope_name, r.display_name,
       date_trunc('month', r.period_start)::date AS month,
       count(*) AS days,
       count(g.g) AS greenest_days,
       sum(r.busy_kwh) AS busy_kwh,
       sum(r.busy_gco2eq) AS busy_gco2eq,
       sum(coalesce(r.busy_kwh * g.g, r.busy_gco2eq)) AS shifted_busy_gco2eq,
       sum(r.busy_gco2eq) - sum(coalesce(r.busy_kwh * g.g, r.busy_gco2eq)) AS shifting_saving_gco2eq,
       (sum(r.busy_gco2eq) - sum(coalesce(r.busy_kwh * g.g, r.busy_gco2eq))) / nullif(sum(r.busy_gco2eq), 0) AS shifting_saving_share
FROM %s r
LEFT JOIN greenest g ON g.day = r.period_start
WHERE r.grain = 'day'
GROUP BY r.scope, r.scope_id, r.scope_name, r.display_name, date_trunc('month', r.period_start)
$q$;
BEGIN
  EXECUTE 'CREATE VIEW public.v_shifting_savings AS ' || format(body,
    '(SELECT e.scope_id, e.scope_name, e.display_name, u.* FROM public.usage_rollup u '
    'JOIN public.v_scope_entity e ON e.scope = u.scope AND e.entity_id = u.entity_id)');
  EXECUTE 'CREATE VIEW reporting.v_shifting_savings AS ' || format(body, 'reporting.usage_rollup');
END
$$;
COMMENT ON VIEW public.v_shifting_savings IS 'Per scope entity and month: the carbon of its busy CPU energy as it ran, and as if each day''s busy energy had run in that day''s greenest hour (national intensity; capacity ignored: an upper bound on the saving). docs/methodology.md, Shifting.';
COMMENT ON VIEW reporting.v_shifting_savings IS 'public.v_shifting_savings for the aggregate scopes (small groups merged as in reporting.usage_rollup).';

-- ========== PRIVILEGES ==========
GRANT SELECT ON public.intensity_forecast, public.forecast_fetch, public.forecast_site, public.forecast_error_daily,
  public.v_forecast_latest, public.v_intensity_now, public.v_forecast_error,
  public.v_shifting_savings TO carbon_analyst;
REVOKE EXECUTE ON FUNCTION public.greenest_window(INTERVAL, TEXT, INTERVAL, TIMESTAMPTZ, INTEGER) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.greenest_window(INTERVAL, TEXT, INTERVAL, TIMESTAMPTZ, INTEGER) TO carbon_analyst;

-- carbon_reporter: the forecast is nobody's personal data; shifting for the aggregate scopes.
CREATE VIEW reporting.v_forecast_latest AS SELECT * FROM public.v_forecast_latest;
CREATE VIEW reporting.v_intensity_now AS SELECT * FROM public.v_intensity_now;
CREATE VIEW reporting.v_forecast_error AS SELECT * FROM public.v_forecast_error;
COMMENT ON VIEW reporting.v_forecast_latest IS 'The next 48 hours as last forecast, national and per site (public.v_forecast_latest).';
COMMENT ON VIEW reporting.v_intensity_now IS 'The current half-hour at each site, as last forecast (public.v_intensity_now).';
COMMENT ON VIEW reporting.v_forecast_error IS 'Forecast error by lead time and area (public.v_forecast_error).';
GRANT SELECT ON reporting.v_forecast_latest, reporting.v_intensity_now, reporting.v_forecast_error,
  reporting.v_shifting_savings TO carbon_reporter;

SELECT public.carbon_document_columns();
