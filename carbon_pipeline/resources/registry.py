"""The workspace registry in MongoDB: who held which host when, users and groups.

`mongodb://…` URIs go to a real server through pymongo. `mongomock://localhost` gives an
in-memory mongomock client seeded from mongoexport files (workspaces.json, users.json,
groups.json: one Extended-JSON document per line) in `seed_dir`; every call after the client
is the same pymongo call either way.
"""

from __future__ import annotations

import functools
from datetime import datetime
from pathlib import Path

import dagster as dg
import pandas as pd
import pymongo
from bson import ObjectId, json_util

from carbon_pipeline.timing import phase

MOCK_SCHEME = "mongomock://"
SEED_COLLECTIONS = ("workspaces", "users", "groups")
WORKSPACE_COLUMNS = [
    "workspace_id",
    "hostname",
    "owner",
    "created_time",
    "acquired_time",
    "deleted_time",
]


class RegistryError(RuntimeError):
    """The registry could not be read or its seed files are malformed."""


def load_seed_file(path: Path) -> list[dict]:
    """Documents of a mongoexport file (one Extended-JSON document per line)."""
    documents = []
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                documents.append(json_util.loads(line))
            except ValueError as exc:
                raise RegistryError(f"{path} line {line_number}: not Extended JSON: {exc}") from exc
    return documents


@functools.cache
def _mock_client(seed_dir: str | None):
    import mongomock  # only the offline mode needs it

    return mongomock.MongoClient(tz_aware=True)


def _seeded_mock_client(database: str, seed_dir: str | None):
    client = _mock_client(seed_dir)
    db = client[database]
    if seed_dir and "_seeded" not in db.list_collection_names():
        folder = Path(seed_dir)
        if not folder.is_dir():
            raise RegistryError(f"MONGO_SEED_DIR {seed_dir} is not a directory")
        for name in SEED_COLLECTIONS:
            file = folder / f"{name}.json"
            if file.exists():
                documents = load_seed_file(file)
                if documents:
                    db[name].insert_many(documents)
        db["_seeded"].insert_one({"from": str(folder)})
    return client


@functools.cache
def _real_client(uri: str) -> pymongo.MongoClient:
    return pymongo.MongoClient(uri, tz_aware=True, serverSelectionTimeoutMS=10_000)


class RegistryResource(dg.ConfigurableResource):
    """The Ada workspace registry (MongoDB database `database`)."""

    mongo_uri: str
    database: str = "ada"
    seed_dir: str | None = None

    def db(self):
        if self.mongo_uri.startswith(MOCK_SCHEME):
            return _seeded_mock_client(self.database, self.seed_dir)[self.database]
        return _real_client(self.mongo_uri)[self.database]

    def workspaces_overlapping(
        self, start: datetime, end: datetime, ids: list[str] = ()
    ) -> pd.DataFrame:
        """Workspaces that may have held a host at some time in [start, end), and those of
        `ids` (workspace ids as str) that the registry still has, whatever their times say
        (looked up only when the first answer lacks them: usually it has them all)."""
        overlapping = {
            "$and": [
                {"$or": [{"created_time": {"$lt": end}}, {"acquired_time": {"$lt": end}}]},
                {
                    "$or": [
                        {"deleted_time": {"$exists": False}},
                        {"deleted_time": None},
                        {"deleted_time": {"$gt": start}},
                    ]
                },
            ]
        }
        projection = {
            "hostname": 1,
            "owner": 1,
            "created_time": 1,
            "acquired_time": 1,
            "deleted_time": 1,
        }
        with phase("registry"):
            documents = list(self.db()["workspaces"].find(overlapping, projection))
            missing = set(ids) - {str(d.get("_id")) for d in documents}
            if missing:
                # Ids are stored as text; the registry's are ObjectIds (or whatever it used).
                as_stored = [*missing, *(ObjectId(i) for i in missing if ObjectId.is_valid(i))]
                documents += self.db()["workspaces"].find({"_id": {"$in": as_stored}}, projection)
        rows = [
            (
                str(doc.get("_id")),
                doc.get("hostname"),
                doc.get("owner"),
                doc.get("created_time"),
                doc.get("acquired_time"),
                doc.get("deleted_time"),
            )
            for doc in documents
        ]
        frame = pd.DataFrame(rows, columns=WORKSPACE_COLUMNS, dtype=object)
        for column in ("created_time", "acquired_time", "deleted_time"):
            frame[column] = pd.to_datetime(frame[column], utc=True)
        return frame

    def users(self, platform_names: list[str]) -> pd.DataFrame:
        """platform_name and display name of the given users that the registry knows."""
        with phase("registry"):
            docs = list(
                self.db()["users"].find(
                    {"platform_name": {"$in": platform_names}}, {"platform_name": 1, "name": 1}
                )
            )
        rows = [(d.get("platform_name"), d.get("name")) for d in docs]
        return pd.DataFrame(rows, columns=["platform_name", "display_name"], dtype=object)

    def groups(self, names: list[str]) -> list[dict]:
        """The `groups` documents with one of these names (without _id and members' details)."""
        with phase("registry"):
            docs = list(self.db()["groups"].find({"name": {"$in": names}}))
        result = []
        for doc in docs:
            members = doc.get("members") or []
            result.append(
                {
                    "name": doc.get("name"),
                    "gid": doc.get("gid"),
                    "type": doc.get("type"),
                    "member_count": len(members),
                }
            )
        return result
