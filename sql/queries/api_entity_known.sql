-- The API: whether an entity of a scope is known to the role (a name it has ever seen).
SELECT EXISTS (SELECT FROM {schema}.v_usage_total u WHERE u.scope = %(scope)s AND u.scope_name = %(name)s) AS known
