"""The power model, by machine type: watts per busy and per idle core (the seed's model), and
for the full footprint watts per GiB of memory and the embodied carbon of the server a host
is a share of. Defaults and their sources: docs/methodology.md."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import dagster as dg
import pandas as pd
from pydantic import Field

REQUIRED_COLUMNS = ("machine_name", "busy_watts_per_core", "idle_watts_per_core")
# Optional columns of the overrides file; an empty cell takes the default.
FOOTPRINT_COLUMNS = ("memory_watts_per_gib", "embodied_kgco2e", "lifetime_years", "server_threads")
MODEL_COLUMNS = ("busy_watts_per_core", "idle_watts_per_core", *FOOTPRINT_COLUMNS)


class PowerModelError(ValueError):
    """The power model configuration is invalid; names the setting or file line."""


def _number(value: object, what: str, positive: bool = False) -> float:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise PowerModelError(f"{what} must be a number, got {value!r}") from None
    if not math.isfinite(number) or number < 0 or (positive and number == 0):
        sign = "positive" if positive else "non-negative"
        raise PowerModelError(f"{what} must be a finite, {sign} number, got {value!r}")
    return number


def _watts(value: object, what: str) -> float:
    try:
        return _number(value, what)
    except PowerModelError as exc:
        raise PowerModelError(str(exc).replace("a number", "a number of watts", 1)) from None


# Which factors must be above 0 (they divide).
_POSITIVE = {"lifetime_years", "server_threads"}


def read_overrides(path: str) -> dict[str, dict[str, float]]:
    """{machine_name: {factor: value}} from a CSV whose header starts
    `machine_name,busy_watts_per_core,idle_watts_per_core` and may go on with any of
    FOOTPRINT_COLUMNS."""
    file = Path(path)
    if not file.is_file():
        raise PowerModelError(f"power model file {path} does not exist")
    overrides: dict[str, dict[str, float]] = {}
    with file.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        header = tuple(reader.fieldnames or ())
        extra = [c for c in header[len(REQUIRED_COLUMNS) :] if c not in FOOTPRINT_COLUMNS]
        if (
            header[: len(REQUIRED_COLUMNS)] != REQUIRED_COLUMNS
            or extra
            or len(set(header)) < len(header)
        ):
            raise PowerModelError(
                f"{path}: header must be {','.join(REQUIRED_COLUMNS)}, then any of "
                f"{','.join(FOOTPRINT_COLUMNS)}; got {','.join(header)}"
            )
        for line, row in enumerate(reader, start=2):
            name = (row["machine_name"] or "").strip()
            if not name:
                raise PowerModelError(f"{path} line {line}: machine_name is empty")
            if name in overrides:
                raise PowerModelError(f"{path} line {line}: {name!r} is listed twice")
            values = {
                column: _watts(row[column], f"{path} line {line} {column}")
                for column in REQUIRED_COLUMNS[1:]
            }
            for column in header[len(REQUIRED_COLUMNS) :]:
                if (row[column] or "").strip():
                    values[column] = _number(
                        row[column], f"{path} line {line} {column}", column in _POSITIVE
                    )
            overrides[name] = values
    return overrides


class PowerModelResource(dg.ConfigurableResource):
    """Watts drawn per core (busy_w for busy CPU seconds, idle_w for idle ones) and, for the
    full footprint, per GiB of memory, and the embodied carbon of the server each host is a
    share of (cpus / server_threads of it). Defaults apply to every machine type;
    `overrides_file` (CSV) overrides them per machine_name."""

    busy_watts_per_core: float = 12.0
    idle_watts_per_core: float = 1.0
    memory_watts_per_gib: float = Field(
        default=0.3725, description="Memory power [W/GiB] (Green Algorithms)."
    )
    embodied_kgco2e: float = Field(
        default=1000.0, description="Manufacturing emissions of one server [kgCO2e]."
    )
    lifetime_years: float = Field(default=4.0, description="A server's life [years] (CCF).")
    server_threads: float = Field(
        default=64.0, description="Hardware threads of one server: a host holds cpus / this."
    )
    overrides_file: str | None = None

    @classmethod
    def from_env(cls) -> PowerModelResource:
        """Configured as README's Configuration says (CARBON_*_WATTS_*, CARBON_POWER_MODEL_FILE)."""
        from carbon_pipeline.config import env, env_float

        return cls(
            busy_watts_per_core=env_float("CARBON_BUSY_WATTS_PER_CORE", 12.0, minimum=0),
            idle_watts_per_core=env_float("CARBON_IDLE_WATTS_PER_CORE", 1.0, minimum=0),
            memory_watts_per_gib=env_float("CARBON_MEMORY_WATTS_PER_GIB", 0.3725, minimum=0),
            embodied_kgco2e=env_float("CARBON_EMBODIED_KGCO2E", 1000.0, minimum=0),
            lifetime_years=env_float("CARBON_SERVER_LIFETIME_YEARS", 4.0, minimum=0.01),
            server_threads=env_float("CARBON_SERVER_THREADS", 64.0, minimum=1),
            overrides_file=env("CARBON_POWER_MODEL_FILE"),
        )

    def defaults(self) -> dict[str, float]:
        names = {
            "busy_watts_per_core": "CARBON_BUSY_WATTS_PER_CORE",
            "idle_watts_per_core": "CARBON_IDLE_WATTS_PER_CORE",
            "memory_watts_per_gib": "CARBON_MEMORY_WATTS_PER_GIB",
            "embodied_kgco2e": "CARBON_EMBODIED_KGCO2E",
            "lifetime_years": "CARBON_SERVER_LIFETIME_YEARS",
            "server_threads": "CARBON_SERVER_THREADS",
        }
        return {
            column: _number(
                getattr(self, column), f"{column} ({names[column]})", column in _POSITIVE
            )
            for column in MODEL_COLUMNS
        }

    def model_for(self, machine_names: pd.Series) -> pd.DataFrame:
        """Every factor of MODEL_COLUMNS aligned with machine_names."""
        defaults = self.defaults()
        overrides = read_overrides(self.overrides_file) if self.overrides_file else {}
        model = pd.DataFrame(index=machine_names.index)
        for column in MODEL_COLUMNS:
            by_name = {name: v[column] for name, v in overrides.items() if column in v}
            model[column] = machine_names.map(by_name).fillna(defaults[column]).astype(float)
        return model
