"""The analysts' views in the graph: SQL read when queried, never materialised, so each is an
asset without a computation, downstream of the tables its query reads (sql/catalog.json, from
the migrations that define them). Their pages show their columns and meaning."""

import dagster as dg

from carbon_pipeline import catalog
from carbon_pipeline.assets.common import OWNERS
from carbon_pipeline.tables import FORECAST_TABLES, STAGE_TABLES

_WRITTEN = {table for tables in STAGE_TABLES.values() for table in tables} | set(FORECAST_TABLES)

VIEWS = [
    dg.AssetSpec(
        key=view,
        # The tables the pipeline writes; the dimensions and reference tables beside them are
        # named in the description.
        deps=[table for table in catalog.tables_read(view) if table in _WRITTEN],
        group_name="views",
        kinds={"postgres", "sql"},
        owners=OWNERS,
        description=catalog.description(view)
        + "\n\nReads: "
        + ", ".join(catalog.tables_read(view))
        + ". A view: computed when queried.",
        metadata={
            "dagster/column_schema": catalog.column_schema(view),
            "dagster/table_name": f"public.{view}",
        },
    )
    for view in catalog.views()
]
