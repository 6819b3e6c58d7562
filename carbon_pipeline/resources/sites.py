"""Where the hosts are: each project's site, the site's GB grid region (the Carbon Intensity
API's region id) and its facility overhead (PUE).

Without a sites file every host is at one site, by default RAL (Harwell: region 12, South
England) with a PUE of 1.0, meaning "not applied". A sites file (CSV) names the sites:

    site,region_id,pue,cloud_project_names
    RAL,12,1.4,IDAaaS;CDAaaS
    Daresbury,6,1.5,*

`cloud_project_names` is a `;`-separated list of the projects whose hosts are at the site;
`*` marks the site of every other project (exactly one site may).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
from pydantic import Field

SITE_COLUMNS = ("site", "region_id", "pue", "cloud_project_names")
REGION_IDS = range(1, 18)  # the API's GB regions (1-14) and its England/Scotland/Wales (15-17)


class SitesError(ValueError):
    """The sites configuration is invalid; names the setting or file line."""


def _site(name: str, region: object, pue: object, where: str) -> tuple[str, int, float]:
    try:
        region_id = int(str(region).strip())
    except ValueError:
        raise SitesError(
            f"{where}: region_id must be a region id of the API, got {region!r}"
        ) from None
    if region_id not in REGION_IDS:
        raise SitesError(f"{where}: region_id must be 1 to 17, got {region_id}")
    try:
        value = float(str(pue).strip())
    except ValueError:
        raise SitesError(f"{where}: pue must be a number, got {pue!r}") from None
    if not math.isfinite(value) or value < 1.0:
        raise SitesError(f"{where}: pue must be at least 1.0, got {pue!r}")
    return name, region_id, value


class SitesResource(dg.ConfigurableResource):
    """The sites of the hosts (see the module's docstring)."""

    default_site: str = Field(default="RAL", description="The site of every host, without a file.")
    default_region_id: int = Field(default=12, description="Its GB region (12: South England).")
    default_pue: float = Field(default=1.0, description="Its PUE (1.0: not applied).")
    sites_file: str | None = None

    def table(self) -> tuple[dict[str, tuple[str, int, float]], tuple[str, int, float]]:
        """({project: (site, region_id, pue)}, the site of every other project)."""
        default = _site(
            self.default_site,
            self.default_region_id,
            self.default_pue,
            "CARBON_SITE / CARBON_SITE_REGION_ID / CARBON_SITE_PUE",
        )
        if not self.sites_file:
            return {}, default
        file = Path(self.sites_file)
        if not file.is_file():
            raise SitesError(f"sites file {self.sites_file} does not exist")
        by_project: dict[str, tuple[str, int, float]] = {}
        rest = None
        with file.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            if tuple(reader.fieldnames or ()) != SITE_COLUMNS:
                raise SitesError(
                    f"{file}: header must be {','.join(SITE_COLUMNS)}, got {reader.fieldnames}"
                )
            for line, row in enumerate(reader, start=2):
                where = f"{file} line {line}"
                name = (row["site"] or "").strip()
                if not name:
                    raise SitesError(f"{where}: site is empty")
                site = _site(name, row["region_id"], row["pue"], where)
                for project in (p.strip() for p in (row["cloud_project_names"] or "").split(";")):
                    if not project:
                        continue
                    if project == "*":
                        if rest is not None:
                            raise SitesError(
                                f"{where}: only one site may take every other project (*)"
                            )
                        rest = site
                    elif project in by_project:
                        raise SitesError(f"{where}: project {project!r} is at two sites")
                    else:
                        by_project[project] = site
        return by_project, rest or default

    def site_of(self, projects: pd.Series) -> pd.DataFrame:
        """site, region_id and pue aligned with projects."""
        by_project, rest = self.table()
        codes, distinct = pd.factorize(projects, use_na_sentinel=False)
        sites = [by_project.get(p, rest) for p in distinct]
        return pd.DataFrame(
            {
                "site": np.array([s[0] for s in sites], dtype=object)[codes],
                "region_id": np.array([s[1] for s in sites], dtype=np.int64)[codes],
                "pue": np.array([s[2] for s in sites], dtype=float)[codes],
            },
            index=projects.index,
        )

    def region_ids(self) -> list[int]:
        """Every region a host may be in."""
        by_project, rest = self.table()
        return sorted({s[1] for s in by_project.values()} | {rest[1]})
