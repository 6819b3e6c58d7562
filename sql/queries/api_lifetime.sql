-- The API: an entity's totals over every hour shown, from the lifetime rollup.
SELECT u.*,
       (SELECT jsonb_object_agg(e.equivalency, u.total_gco2eq / e.gco2eq_per_unit)
        FROM {schema}.equivalency e) AS equivalencies
FROM {schema}.v_usage_total u
WHERE u.scope = %(scope)s AND u.scope_name = %(name)s
