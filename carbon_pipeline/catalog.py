"""What the warehouse's tables and views hold, as their COMMENTs in the migrations say: the one
source of the asset graph's descriptions and column schemas. Read from a migrated database
into sql/catalog.json by `carbon-pipeline catalog`, so that Dagster loads the definitions
without a database; the suite checks the file against the migrations (test_asset_graph.py)."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import dagster as dg

from carbon_pipeline.resources.warehouse import SQL_DIR

CATALOG_FILE = SQL_DIR / "catalog.json"

RELATIONS = """
SELECT c.relname, c.relkind IN ('r', 'p'), coalesce(obj_description(c.oid, 'pg_class'), '')
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public'
WHERE c.relkind IN ('r', 'p', 'v') AND NOT c.relispartition AND c.relname <> 'schema_migrations'
ORDER BY c.relname
"""

COLUMNS = """
SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod),
       coalesce(col_description(c.oid, a.attnum), '')
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public'
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE c.relkind IN ('r', 'p', 'v') AND NOT c.relispartition
ORDER BY c.relname, a.attnum
"""

# The relations each view's query names (its rewrite rule's dependencies).
VIEW_READS = """
SELECT DISTINCT v.relname, t.relname
FROM pg_rewrite r
JOIN pg_class v ON v.oid = r.ev_class AND v.relkind = 'v'
JOIN pg_namespace vn ON vn.oid = v.relnamespace AND vn.nspname = 'public'
JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
JOIN pg_class t ON t.oid = d.refobjid AND t.oid <> v.oid AND t.relkind IN ('r', 'p', 'v')
JOIN pg_namespace tn ON tn.oid = t.relnamespace AND tn.nspname = 'public'
ORDER BY 1, 2
"""


def read_catalog(conn) -> dict:
    """{"tables": {name: entry}, "views": {name: entry}} of a migrated database; an entry
    holds the description, the columns ([name, type, description]) and, for a view, the
    relations it reads."""
    catalog: dict[str, dict] = {"tables": {}, "views": {}}
    kinds = {}
    for name, is_table, comment in conn.execute(RELATIONS):
        kinds[name] = "tables" if is_table else "views"
        catalog[kinds[name]][name] = {"description": comment, "columns": []}
    for name, column, type_name, comment in conn.execute(COLUMNS):
        if name in kinds:
            catalog[kinds[name]][name]["columns"].append([column, type_name, comment])
    for view, relation in conn.execute(VIEW_READS):
        catalog["views"][view].setdefault("reads", []).append(relation)
    return catalog


def write_catalog(conn, path: Path = CATALOG_FILE) -> None:
    path.write_text(json.dumps(read_catalog(conn), indent=1, sort_keys=True) + "\n")


@functools.cache
def catalog() -> dict:
    return json.loads(CATALOG_FILE.read_text())


def entry(name: str) -> dict:
    relations = {**catalog()["tables"], **catalog()["views"]}
    if name not in relations:
        raise KeyError(f"{name} is not in {CATALOG_FILE} (run `carbon-pipeline catalog`)")
    return relations[name]


def description(name: str) -> str:
    return entry(name)["description"]


def column_schema(name: str) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[
            dg.TableColumn(column, type_name, description=meaning or None)
            for column, type_name, meaning in entry(name)["columns"]
        ]
    )


def views() -> list[str]:
    return sorted(catalog()["views"])


def tables_read(view: str) -> list[str]:
    """The tables a view reads, directly or through other views."""
    found: set[str] = set()
    pending = list(catalog()["views"][view].get("reads", []))
    while pending:
        relation = pending.pop()
        if relation in catalog()["views"]:
            pending += catalog()["views"][relation].get("reads", [])
        else:
            found.add(relation)
    return sorted(found)


def main() -> None:
    """`make catalog`: migrate a scratch database on the local server and write the file."""
    import psycopg

    from carbon_pipeline.demo import postgres
    from carbon_pipeline.resources.warehouse import WarehouseResource, dispose_engines

    admin = postgres.admin_url()
    url = postgres.fresh_database(admin, "carbon_catalog_scratch")
    try:
        warehouse = WarehouseResource(database_url=url)
        warehouse.migrate()
        with warehouse.connect() as conn:
            write_catalog(conn)
    finally:
        dispose_engines()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute("DROP DATABASE IF EXISTS carbon_catalog_scratch")
    print(f"wrote {CATALOG_FILE}")


if __name__ == "__main__":
    main()
