"""The workspace registry in MongoDB: who held which host when, users and groups.

`mongodb://…` URIs go to a real server through pymongo. `mongomock://localhost` gives an
in-memory mongomock client seeded from mongoexport files (workspaces.json, users.json,
groups.json: one Extended-JSON document per line) in `seed_dir`; every call after the client
is the same pymongo call either way.
"""

from __future__ import annotations

import functools
import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pandas as pd
import pymongo
import pymongo.errors
import requests
from bson import ObjectId, json_util
from pydantic import Field, PrivateAttr

from carbon_pipeline.resources.http import Budget
from carbon_pipeline.secrets import mask_secrets, mask_url
from carbon_pipeline.timing import phase

MOCK_SCHEME = "mongomock://"
SEED_COLLECTIONS = ("workspaces", "users", "groups")
TIME_FIELDS = ("created_time", "acquired_time", "deleted_time")
# A number above this is an epoch in milliseconds (JavaScript's Date), else in seconds.
EPOCH_MILLISECONDS_ABOVE = 1e11
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


_SEEDING = threading.Lock()


def _seeded_mock_client(database: str, seed_dir: str | None):
    # Runs of one process (threads) share one in-memory registry: made and seeded once.
    with _SEEDING:
        client = _mock_client(seed_dir)
        _seed(client[database], seed_dir)
    return client


def _seed(db, seed_dir: str | None) -> None:
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


@functools.cache
def _real_client(uri: str) -> pymongo.MongoClient:
    return pymongo.MongoClient(uri, tz_aware=True, serverSelectionTimeoutMS=10_000)


class RegistryResource(dg.ConfigurableResource):
    """The Ada workspace registry (MongoDB database `database`)."""

    mongo_uri: str
    database: str = "ada"
    seed_dir: str | None = None
    timeout_seconds: float = Field(
        default=60.0, description="Longest one registry query may take, reading included [s]."
    )
    run_timeout_seconds: float = Field(
        default=600.0, description="Longest a run may spend asking the registry [s]."
    )
    _budget: Budget = PrivateAttr(default_factory=Budget)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._budget.start(self.run_timeout_seconds)

    @contextmanager
    def _asking(self, what: str) -> Iterator[None]:
        """A query (find and reading its cursor) within its time: pymongo's client-side
        operation timeout bounds server selection, connecting and every read."""
        where = f"the registry (MongoDB at {mask_url(self.mongo_uri)})"
        try:
            seconds = self._budget.call_seconds(self.timeout_seconds, where)
        except requests.Timeout as exc:
            raise RegistryError(f"{exc}; asking for {what}") from exc
        try:
            with phase("registry"), pymongo.timeout(seconds):
                yield
        except pymongo.errors.PyMongoError as exc:
            raise RegistryError(
                f"{where} gave no answer for {what} within {seconds:g} s: "
                f"{mask_secrets(str(exc))[:300]}"
            ) from exc

    def db(self):
        if self.mongo_uri.startswith(MOCK_SCHEME):
            return _seeded_mock_client(self.database, self.seed_dir)[self.database]
        return _real_client(self.mongo_uri)[self.database]

    def workspaces_overlapping(
        self, start: datetime, end: datetime, ids: list[str] = ()
    ) -> tuple[pd.DataFrame, list[str]]:
        """Workspaces that may have held a host at some time in [start, end), and those of
        `ids` (workspace ids as str) that the registry still has, whatever their times say
        (looked up only when the first answer lacks them: usually it has them all).

        Returns the workspaces (times as UTC timestamps) and the problems found in their
        documents, each naming the workspace and the field (see `parse_workspace`)."""
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
        # A time stored as anything but a date (text, a number) never matches a date
        # comparison in MongoDB: such documents are fetched too, parsed here and filtered
        # like the rest.
        odd_times = [
            {field: {"$not": {"$type": "date"}, "$exists": True, "$ne": None}}
            for field in TIME_FIELDS
        ]
        projection = dict.fromkeys(("hostname", "owner", *TIME_FIELDS), 1)
        with self._asking("workspaces"):
            workspaces = self.db()["workspaces"]
            documents = list(workspaces.find({"$or": [overlapping, *odd_times]}, projection))
            missing = set(ids) - {str(d.get("_id")) for d in documents}
            if missing:
                # Ids are stored as text; the registry's are ObjectIds (or whatever it used).
                as_stored = [*missing, *(ObjectId(i) for i in missing if ObjectId.is_valid(i))]
                documents += workspaces.find({"_id": {"$in": as_stored}}, projection)
        rows, problems, seen = [], [], set()
        for document in documents:
            key = str(document.get("_id"))
            if key in seen:
                continue
            seen.add(key)
            row, said = parse_workspace(document)
            problems += said
            if row is not None:
                rows.append(row)
        frame = pd.DataFrame(rows, columns=WORKSPACE_COLUMNS, dtype=object)
        for column in TIME_FIELDS:
            frame[column] = pd.to_datetime(frame[column], utc=True).astype("datetime64[ns, UTC]")
        held_from = frame["created_time"].where(
            frame["acquired_time"].isna() | (frame["acquired_time"] < frame["created_time"]),
            frame["acquired_time"],
        )
        overlaps = (held_from < end) & (
            frame["deleted_time"].isna() | (frame["deleted_time"] > start)
        )
        keep = overlaps | frame["workspace_id"].isin(ids)
        return frame[keep].reset_index(drop=True), problems

    def users(self, platform_names: list[str]) -> pd.DataFrame:
        """platform_name and display name of the given users that the registry knows."""
        with self._asking("users"):
            docs = list(
                self.db()["users"].find(
                    {"platform_name": {"$in": platform_names}}, {"platform_name": 1, "name": 1}
                )
            )
        rows = [(d.get("platform_name"), d.get("name")) for d in docs]
        return pd.DataFrame(rows, columns=["platform_name", "display_name"], dtype=object)

    def groups(self, names: list[str]) -> list[dict]:
        """The `groups` documents with one of these names (without _id and members' details)."""
        with self._asking("groups"):
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


def _registry_time(value: object) -> datetime | None:
    """A registry time as an aware UTC datetime: a BSON date (naive = UTC), an ISO 8601
    string, or an epoch number (seconds, or milliseconds above EPOCH_MILLISECONDS_ABOVE).
    None for a missing time; ValueError for anything else."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, bool):
        raise ValueError(f"a boolean ({value!r}) is not a time")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError(f"{value!r} is not a time")
        seconds = value / 1000 if abs(value) > EPOCH_MILLISECONDS_ABOVE else value
        return datetime.fromtimestamp(seconds, tz=UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"{value[:40]!r} is not an ISO 8601 time") from None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    raise ValueError(f"a {type(value).__name__} is not a time")


def parse_workspace(document: dict) -> tuple[tuple | None, list[str]]:
    """One workspace document as (workspace_id, hostname, owner, created, acquired, deleted),
    and what was wrong with it. A document whose hostname is not text, or whose times cannot
    be read (created_time missing included), holds nothing: it is skipped, and its hours stay
    unattributed rather than go to the wrong person. An owner that is not text counts as no
    owner (unattributed)."""
    key = str(document.get("_id"))
    skipped: list[str] = []  # field: why
    times = {}
    for field in TIME_FIELDS:
        try:
            times[field] = _registry_time(document.get(field))
        except ValueError as exc:
            skipped.append(f"{field}: {exc}")
    if "created_time" in times and times["created_time"] is None:
        skipped.append("created_time: missing")
    hostname = document.get("hostname")
    if hostname is not None and not isinstance(hostname, str):
        skipped.append(
            f"hostname: a {type(hostname).__name__} ({str(hostname)[:40]}) is not a host name"
        )
    problems = [f"workspace {key}: {why}; the workspace is skipped" for why in skipped]
    owner = document.get("owner")
    if owner is not None and not isinstance(owner, str):
        problems.append(
            f"workspace {key}: owner: a {type(owner).__name__} is not a platform_name; "
            "its hours go to unattributed"
        )
        owner = None
    if skipped:
        return None, problems
    row = (
        key,
        hostname,
        owner,
        times["created_time"],
        times["acquired_time"],
        times["deleted_time"],
    )
    return row, problems
