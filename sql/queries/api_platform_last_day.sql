-- The API: the last day with a shown hour of the platform (from the daily rollup: one index
-- probe, where the hourly view would be read whole).
SELECT max(d.day) AS day FROM {schema}.v_usage_daily d WHERE d.scope = 'ada'
