"""The carbon monitoring backend's REST API (the seed's `ada-carbon-monitoring-api`), served from
the warehouse: every route of the seed at the same path and method, each a read of what the
pipeline stored (nothing in a request calls Prometheus or the Carbon Intensity API).

Who sees what: a caller without a token sees exactly what `carbon_reporter` sees (its queries
run under that role); a signed-in user (an OIDC bearer token) sees their own workspaces and
usage too; a caller with the configured analyst claim sees what `carbon_analyst` sees.
docs/api.md is the reference."""
