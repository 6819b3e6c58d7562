"""A small platform on which every way of recovering one person's numbers from carbon_reporter's
rows has something to find (issue 35): 5 projects, 3 machine types, 7 groups, 31 people over
3 days, the hours of a generated crowd (groups of 0 to 7 people, people in several groups at
once) beside the situations the review found:

- IDAaaS_SANS has one person, `solo`, from 09:00 to 19:00 every day, and nobody else; its
  project IDAaaS has large groups beside it;
- TDAaaS has one person, `owl`, from 22:00 to 02:00, and a crowd by day;
- the machine type SANS is used by two people only: `solo` and `pat` (EDAaaS_SANS, always);
- from 02:00 to 05:00 `insomniac` is alone on the platform, in five groups at once.

Machine types draw different watts, so that CPU-seconds and energy weigh them differently.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from carbon_pipeline.demo.fleet import Fleet, FleetHost

START = datetime(2025, 3, 10, tzinfo=UTC)
END = START + timedelta(days=3)
GROUPS = {  # group: (project, machine type)
    "IDAaaS_Muon": ("IDAaaS", "Muon"),
    "IDAaaS_SANS": ("IDAaaS", "SANS"),
    "IDAaaS_Jupyter": ("IDAaaS", "Jupyter"),
    "CDAaaS_Jupyter": ("CDAaaS", "Jupyter"),
    "DDAaaS_Jupyter": ("DDAaaS", "Jupyter"),
    "TDAaaS_Muon": ("TDAaaS", "Muon"),
    "EDAaaS_SANS": ("EDAaaS", "SANS"),
}
CROWDED = ["IDAaaS_Muon", "IDAaaS_Jupyter", "CDAaaS_Jupyter", "DDAaaS_Jupyter", "TDAaaS_Muon"]
CROWD = [f"user{n:02d}" for n in range(27)]
PEOPLE = [*CROWD, "solo", "owl", "pat", "insomniac"]
# machine_name, busy W/core, idle W/core, W/GiB: the power model's overrides.
POWER_MODEL = (
    "machine_name,busy_watts_per_core,idle_watts_per_core,memory_watts_per_gib\n"
    "Muon,15,2,0.4\nSANS,10,1.5,0.3\nJupyter,8,0.5,0.35\n"
)
PROFILES = ("busy", "office", "constant:0.4", "constant:0.15", "idle")


def hosts() -> list[FleetHost]:
    """Two hosts a group, 172.16.200.x, each its own load and size."""
    made = []
    for index, (project, machine) in enumerate(GROUPS.values()):
        for second in (0, 1):
            n = 2 * index + second
            made.append(
                FleetHost(
                    f"172.16.200.{10 + n}:9100",
                    project,
                    machine,
                    2 + n % 3,
                    START,
                    END,
                    PROFILES[n % len(PROFILES)],
                    memory_gib=4.0 + n,
                )
            )
    return made


def presence(seed: int = 35) -> dict[tuple[datetime, str], set[str]]:
    """{(hour, group): the people holding a workspace on its hosts for the whole hour}."""
    rng = np.random.default_rng(seed)
    present: dict[tuple[datetime, str], set[str]] = {}
    hour = START
    while hour < END:
        h = hour.hour
        for group in GROUPS:
            people: set[str] = set()
            if group in CROWDED and 8 <= h < 20:
                size = int(rng.integers(0, 8))  # 0 to 7 people
                people |= set(rng.choice(CROWD, size=size, replace=False))
            if group == "IDAaaS_SANS" and 9 <= h < 19:
                people.add("solo")
            if group == "TDAaaS_Muon" and (h >= 22 or h < 2):
                people.add("owl")
            if group == "EDAaaS_SANS" and not 2 <= h < 5:
                people.add("pat")
            if 2 <= h < 5 and group in CROWDED:
                people.add("insomniac")
            present[(hour, group)] = people
        hour += timedelta(hours=1)
    return present


def workspaces(present: dict[tuple[datetime, str], set[str]]) -> list[dict]:
    """A workspace per person, group and run of consecutive hours, on one of the group's two
    hosts (alternating), created and deleted on the hour."""
    made = []
    addresses = {
        group: (f"172.16.200.{10 + 2 * i}", f"172.16.200.{11 + 2 * i}")
        for i, group in enumerate(GROUPS)
    }
    for group in GROUPS:
        for person in PEOPLE:
            hour, began = START, None
            while hour <= END:
                here = hour < END and person in present[(hour, group)]
                if here and began is None:
                    began = hour
                if not here and began is not None:
                    host = addresses[group][len(made) % 2]
                    made.append(
                        {
                            "hostname": host,
                            "owner": person,
                            "state": "deleted",
                            "created_time": began,
                            "deleted_time": hour,
                        }
                    )
                    began = None
                hour += timedelta(hours=1)
    return made


def build_world(seed: int = 35) -> tuple[Fleet, dict[tuple[datetime, str], set[str]]]:
    present = presence(seed)
    users = [
        {"platform_name": p, "uid": 2000 + i, "name": p.title(), "email": f"{p}@example.org"}
        for i, p in enumerate(PEOPLE)
    ]
    return Fleet(hosts(), workspaces=workspaces(present), users=users, seed=seed), present
