-- The API: the points of a chart: an entity's hours (day view), days (month view) or months
-- (year view) in [start, end), from the role's hourly view or rollups ({schema}; {points}:
-- v_usage_hourly, v_usage_daily or v_usage_monthly; {at}: the column its period starts at).
SELECT p.{at} AS start, p.*
FROM {schema}.{points} p
WHERE p.scope = %(scope)s AND p.scope_name = %(name)s AND p.{at} >= %(start)s AND p.{at} < %(end)s
ORDER BY 1
