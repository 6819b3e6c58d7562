"""Dagster's PostgreSQL event log, with its two per-partition writes made bulk.

A ranged run stores one materialisation event per asset and partition: a year of the
thirteen table assets is 113,880 events, and a checked asset's planned check is a row per
partition. dagster-postgres (0.29) writes a batch of events as one INSERT whose VALUES
SQLAlchemy compiles bind parameter by bind parameter, and serialises a planned check's event
once per partition. This storage writes the same rows, with the same ids, tags and asset
index, as an executemany (SQLAlchemy's "insertmanyvalues": one compiled statement, pages of
rows) and serialises a planned check once. Measured on a year-long noop run (bench (d)): the
bookkeeping of 1,460 hours fell from 25.0 s to 15.4 s.

It is configured in deploy/dagster.yaml as the instance's event_log_storage; everything else
is dagster-postgres's own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from dagster._core.events import DagsterEventType
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus
from dagster._core.storage.event_log.schema import (
    AssetCheckExecutionsTable,
    SqlEventLogStorageTable,
)
from dagster._serdes import ConfigurableClassData, serialize_value
from dagster_postgres.event_log.event_log import PostgresEventLogStorage
from dagster_postgres.utils import get_token_provider_from_config, pg_url_from_config


class BulkPostgresEventLogStorage(PostgresEventLogStorage):
    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]
    ) -> BulkPostgresEventLogStorage:
        return cls(
            inst_data=inst_data,
            postgres_url=pg_url_from_config(config_value),
            should_autocreate_tables=config_value.get("should_autocreate_tables", True),
            token_provider=get_token_provider_from_config(config_value),
        )

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        dagster_events = [event.get_dagster_event() for event in events]
        if any(
            e.event_type != DagsterEventType.ASSET_MATERIALIZATION
            or e.is_asset_failed_to_materialize
            for e in dagster_events
        ):
            super().store_event_batch(events)
            return
        insert = SqlEventLogStorageTable.insert().returning(
            SqlEventLogStorageTable.c.id, sort_by_parameter_order=True
        )
        with self._connect() as conn:
            event_ids = [
                row[0] for row in conn.execute(insert, [self._event_to_row(e) for e in events])
            ]
        # The asset index keeps each asset's latest event (a batch may hold several assets').
        latest = {
            e.asset_key: (event, event_id)
            for e, event, event_id in zip(dagster_events, events, event_ids, strict=True)
        }
        with self.index_transaction() as conn:
            self._store_asset_event_tags(conn, events, event_ids)
            for event, event_id in latest.values():
                self._store_asset_event(conn, event, event_id)

    def _store_asset_check_evaluation_planned(
        self, event: EventLogEntry, event_id: int | None
    ) -> None:
        planned = event.get_dagster_event().event_specific_data
        partitions = (
            planned.partitions_subset.get_partition_keys() if planned.partitions_subset else [None]
        )
        row = {
            "asset_key": planned.asset_key.to_string(),
            "check_name": planned.check_name,
            "run_id": event.run_id,
            "execution_status": AssetCheckExecutionRecordStatus.PLANNED.value,
            "evaluation_event": serialize_value(event),
            "evaluation_event_timestamp": self._event_insert_timestamp(event),
            "evaluation_event_storage_id": event_id,
        }
        with self.index_connection() as conn:
            conn.execute(
                AssetCheckExecutionsTable.insert(),
                [{**row, "partition": partition} for partition in partitions],
            )
