-- The API: the groups the role may name, with their project and machine type.
SELECT g.group_name AS name, g.cloud_project_name, g.machine_name
FROM {schema}.v_groups g
ORDER BY 1
