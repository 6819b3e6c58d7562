"""The power model: watts per busy and per idle core, by machine type."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import dagster as dg
import pandas as pd

OVERRIDE_COLUMNS = ("machine_name", "busy_watts_per_core", "idle_watts_per_core")


class PowerModelError(ValueError):
    """The power model configuration is invalid; names the setting or file line."""


def _watts(value: object, what: str) -> float:
    try:
        watts = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise PowerModelError(f"{what} must be a number of watts, got {value!r}") from None
    if not math.isfinite(watts) or watts < 0:
        raise PowerModelError(
            f"{what} must be a finite, non-negative number of watts, got {value!r}"
        )
    return watts


def read_overrides(path: str) -> dict[str, tuple[float, float]]:
    """{machine_name: (busy W/core, idle W/core)} from a CSV with a header row
    `machine_name,busy_watts_per_core,idle_watts_per_core`."""
    file = Path(path)
    if not file.is_file():
        raise PowerModelError(f"power model file {path} does not exist")
    overrides: dict[str, tuple[float, float]] = {}
    with file.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if tuple(reader.fieldnames or ()) != OVERRIDE_COLUMNS:
            raise PowerModelError(
                f"{path}: header must be {','.join(OVERRIDE_COLUMNS)}, got {reader.fieldnames}"
            )
        for line, row in enumerate(reader, start=2):
            name = (row["machine_name"] or "").strip()
            if not name:
                raise PowerModelError(f"{path} line {line}: machine_name is empty")
            if name in overrides:
                raise PowerModelError(f"{path} line {line}: {name!r} is listed twice")
            overrides[name] = (
                _watts(row["busy_watts_per_core"], f"{path} line {line} busy_watts_per_core"),
                _watts(row["idle_watts_per_core"], f"{path} line {line} idle_watts_per_core"),
            )
    return overrides


class PowerModelResource(dg.ConfigurableResource):
    """Watts drawn per core: busy_w for busy CPU seconds, idle_w for idle ones.

    Defaults apply to every machine type; `overrides_file` (CSV) overrides them per
    machine_name."""

    busy_watts_per_core: float = 12.0
    idle_watts_per_core: float = 1.0
    overrides_file: str | None = None

    def table(self) -> tuple[tuple[float, float], dict[str, tuple[float, float]]]:
        default = (
            _watts(self.busy_watts_per_core, "busy watts per core (CARBON_BUSY_WATTS_PER_CORE)"),
            _watts(self.idle_watts_per_core, "idle watts per core (CARBON_IDLE_WATTS_PER_CORE)"),
        )
        overrides = read_overrides(self.overrides_file) if self.overrides_file else {}
        return default, overrides

    def watts_for(self, machine_names: pd.Series) -> pd.DataFrame:
        """busy_watts_per_core and idle_watts_per_core aligned with machine_names."""
        (busy, idle), overrides = self.table()
        busy_by_name = {name: w[0] for name, w in overrides.items()}
        idle_by_name = {name: w[1] for name, w in overrides.items()}
        return pd.DataFrame(
            {
                "busy_watts_per_core": machine_names.map(busy_by_name).fillna(busy).astype(float),
                "idle_watts_per_core": machine_names.map(idle_by_name).fillna(idle).astype(float),
            },
            index=machine_names.index,
        )
