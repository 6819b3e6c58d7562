"""A generated fleet of workspace hosts whose true CPU seconds per hour are known exactly.

Every host is scraped every `scrape_seconds` on exact multiples, from an hour boundary to an
hour boundary, so Prometheus' `increase(x[1h])` at an hour's end needs no extrapolation and
equals the sum of the increments inside the hour. Increments are whole quarter-seconds, so
every sum is exact in floating point. A reboot is a sample whose counters restart at 0 (no CPU
counted in the step before it), which `increase` handles exactly.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from carbon_pipeline.hosts import normalise_host
from carbon_pipeline.resources.prometheus import HOST_CPU_COLUMNS, UNIDENTIFIED
from carbon_pipeline.times import utc_ns

ALL_MODES = ("user", "system", "nice", "irq", "softirq", "steal", "idle", "iowait")
BUSY_MODES = ("user", "system", "nice", "irq", "softirq", "steal")
# Share of busy time per busy mode, in percent; the first mode takes the rounding rest.
BUSY_SPLIT = {"user": 70, "system": 20, "nice": 2, "irq": 2, "softirq": 3, "steal": 3}
IOWAIT_PERCENT_OF_IDLE = 2
QUARTERS = 4  # increments are whole quarter-seconds


def epoch(t: datetime) -> int:
    return int(t.timestamp())


@dataclass(frozen=True)
class FleetHost:
    """One VM: its labels as node_exporter reports them, cpus, life and load profile."""

    instance: str
    cloud_project_name: str
    machine_name: str
    cpus: int
    start: datetime
    end: datetime
    profile: str = "office"  # idle | busy | office | constant:<fraction>
    host_label: str | None = None
    reboots: tuple[datetime, ...] = ()
    # Broken samples for the quality tests: (time, "nan" | "inf" | "backwards") on cpu 0's
    # first mode. The truth then no longer holds for the hours around them.
    corrupt: tuple[tuple[datetime, str], ...] = ()
    # Times [a, b] the host is not scraped strictly inside (a missed scrape target; its
    # counters go on counting): Prometheus has no answer for the hours that lose samples.
    # The truth drops every hour that loses one, so let a and b be whole hours.
    silent: tuple[tuple[datetime, datetime], ...] = ()
    # Scraped a second time: by another job (the same labels but `job`), or under another
    # name of the same VM (another `instance`). Its counters appear once per scrape.
    also_scraped_by: str | None = None
    also_scraped_as: str | None = None
    memory_gib: float | None = 8.0  # node_memory_MemTotal_bytes / 2^30; None: not exported

    @property
    def hostname(self) -> str:
        name = self.host_label or self.instance
        return normalise_host(name) if name else UNIDENTIFIED

    def scrapes(self, cpu: int, mode: str) -> list[dict[str, str]]:
        """The label sets of every series of one cpu and mode (one per scrape)."""
        labels = self.labels(cpu, mode)
        extra = []
        if self.also_scraped_by:
            extra.append({**labels, "job": self.also_scraped_by})
        if self.also_scraped_as:
            extra.append({**labels, "instance": self.also_scraped_as})
        return [labels, *extra]

    def memory_labels(self) -> list[dict[str, str]]:
        """The label sets of the memory gauge (one per scrape)."""
        return [
            {k: v for k, v in labels.items() if k not in ("cpu", "mode")}
            for labels in self.scrapes(0, "idle")
        ]

    def labels(self, cpu: int, mode: str) -> dict[str, str]:
        labels = {"instance": self.instance} if self.instance else {}
        if self.host_label:
            labels["host"] = self.host_label
        labels.update(
            cloud_project_name=self.cloud_project_name,
            machine_name=self.machine_name,
            cpu=str(cpu),
            mode=mode,
            job="node",
        )
        return labels


def busy_fraction(host: FleetHost, times: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Fraction of each step (rows) each cpu (columns) was busy."""
    shape = (len(times), host.cpus)
    kind, _, arg = host.profile.partition(":")
    if kind == "constant":
        return np.full(shape, float(arg))
    if kind == "idle":
        return rng.uniform(0.0, 0.03, shape)
    hour = (times // 3600) % 24
    weekday = ((times // 86400) + 3) % 7 < 5  # 1970-01-01 was a Thursday
    if kind == "busy":
        base = 0.55 + 0.35 * np.sin(2 * np.pi * hour / 24)
        return np.clip(base[:, None] + rng.normal(0, 0.1, shape), 0, 1)
    if kind == "office":
        working = (hour >= 9) & (hour < 17) & weekday
        base = np.where(working, 0.6, 0.02)
        return np.clip(base[:, None] + rng.normal(0, 0.05, shape) * working[:, None], 0, 1)
    raise ValueError(f"unknown load profile {host.profile!r}")


def step_increments(
    host: FleetHost, times: np.ndarray, modes: tuple[str, ...], rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Quarter-seconds each (step, cpu) spent in each mode during the step ending at times[i]."""
    step = int(times[1] - times[0]) if len(times) > 1 else 300
    per_step = step * QUARTERS
    busy = np.rint(busy_fraction(host, times, rng) * per_step).astype(np.int64)
    busy_modes = [m for m in modes if m in BUSY_MODES]
    result: dict[str, np.ndarray] = {}
    rest = busy.copy()
    for mode in busy_modes[1:]:
        result[mode] = busy * BUSY_SPLIT[mode] // 100
        rest -= result[mode]
    if busy_modes:
        result[busy_modes[0]] = rest
    idle_total = per_step - busy
    iowait = idle_total * IOWAIT_PERCENT_OF_IDLE // 100 if "iowait" in modes else 0
    if "iowait" in modes:
        result["iowait"] = iowait
    result["idle"] = idle_total - iowait
    rebooting = np.isin(times, [epoch(r) for r in host.reboots])
    for values in result.values():
        values[rebooting] = 0
    return result


@dataclass
class Fleet:
    """Hosts plus the history generator and its exact hourly truth."""

    hosts: list[FleetHost]
    modes: tuple[str, ...] = ALL_MODES
    scrape_seconds: int = 300
    seed: int = 7
    workspaces: list[dict] = field(default_factory=list)
    users: list[dict] = field(default_factory=list)
    groups: list[dict] = field(default_factory=list)

    def slices(
        self, start: datetime, end: datetime, slice_hours: int
    ) -> Iterator[
        tuple[
            list[tuple[dict, np.ndarray, np.ndarray]],
            list[tuple[dict, np.ndarray, np.ndarray]],
            pd.DataFrame,
        ]
    ]:
        """For consecutive slices of [start, end]: the samples of every CPU counter and of
        every memory gauge in the slice, and the true CPU seconds (and memory) of the hours
        whose end lies in the slice. Counters carry over from slice to slice."""
        counters: dict[tuple[int, int, str], float] = {}
        final = epoch(end)
        for slice_start in range(epoch(start), final, slice_hours * 3600):
            first_slice = slice_start == epoch(start)
            slice_end = min(final, slice_start + slice_hours * 3600)
            series, gauges, truth = [], [], []
            for index, host in enumerate(self.hosts):
                lo = max(
                    epoch(host.start),
                    slice_start if first_slice else slice_start + self.scrape_seconds,
                )
                hi = min(epoch(host.end), slice_end)
                if hi < lo:
                    continue
                lo += (-(lo - epoch(host.start))) % self.scrape_seconds
                times = np.arange(lo, hi + 1, self.scrape_seconds, dtype=np.int64)
                if len(times) == 0:
                    continue
                rng = np.random.default_rng([self.seed, index, slice_start])
                increments = step_increments(host, times, self.modes, rng)
                is_first = times == epoch(host.start)
                rebooting = np.isin(times, [epoch(r) for r in host.reboots])
                scraped = np.ones(len(times), dtype=bool)
                for a, b in host.silent:
                    scraped &= ~((times > epoch(a)) & (times < epoch(b)))
                for mode in self.modes:
                    for cpu in range(host.cpus):
                        key = (index, cpu, mode)
                        d = increments[mode][:, cpu].astype(np.float64) / QUARTERS
                        d[is_first] = 0.0  # the first sample only sets the starting value
                        start_value = counters.get(key, 1000.0 * (cpu + 1) + 37.25)
                        values = _counter(start_value, d, rebooting)
                        counters[key] = float(values[-1])
                        if cpu == 0 and mode == self.modes[0]:
                            _corrupt(values, times, host.corrupt)
                        for labels in host.scrapes(cpu, mode):
                            series.append((labels, times[scraped], values[scraped]))
                if host.memory_gib is not None:
                    memory = np.full(int(scraped.sum()), host.memory_gib * 2**30)
                    for labels in host.memory_labels():
                        gauges.append((labels, times[scraped], memory))
                truth.append(self._truth(host, times, increments, is_first, scraped))
            yield series, gauges, pd.concat(truth, ignore_index=True) if truth else _empty_truth()

    def _truth(self, host, times, increments, is_first, scraped) -> pd.DataFrame:
        # An hour is known only if every step in it ends in a scrape.
        valid = ~is_first & scraped
        hour_start = (times - 1) // 3600 * 3600  # a step ending at T counts in the hour before T
        busy = sum(increments[m].sum(axis=1) for m in self.modes if m in BUSY_MODES)
        idle = sum(increments[m].sum(axis=1) for m in self.modes if m not in BUSY_MODES)
        frame = pd.DataFrame(
            {
                "hour": hour_start[valid],
                "busy": busy[valid] / QUARTERS,
                "idle": idle[valid] / QUARTERS,
            }
        )
        hours = frame.groupby("hour", as_index=False).agg(
            busy_cpu_seconds_total=("busy", "sum"),
            idle_cpu_seconds_total=("idle", "sum"),
            steps=("busy", "size"),
        )
        # Prometheus only answers for hours it saw from their start: a partial first or
        # last hour cannot occur because hosts live from hour boundary to hour boundary.
        hours = hours[hours["steps"] == 3600 // self.scrape_seconds]
        return pd.DataFrame(
            {
                "timestamp_utc": utc_ns(pd.to_datetime(hours["hour"], unit="s", utc=True)),
                "hostname": host.hostname,
                "cloud_project_name": host.cloud_project_name,
                "machine_name": host.machine_name,
                "cpu_count": host.cpus,
                "busy_cpu_seconds_total": hours["busy_cpu_seconds_total"].to_numpy(),
                "idle_cpu_seconds_total": hours["idle_cpu_seconds_total"].to_numpy(),
                "memory_gib": np.nan if host.memory_gib is None else host.memory_gib,
            }
        )


def _counter(start_value: float, increments: np.ndarray, rebooting: np.ndarray) -> np.ndarray:
    """Counter values: cumulative increments, restarting from 0 at each reboot sample."""
    values = np.empty_like(increments)
    current = start_value
    boundaries = np.flatnonzero(rebooting)
    previous = 0
    for b in [*boundaries, len(increments)]:
        segment = increments[previous:b]
        values[previous:b] = current + np.cumsum(segment)
        if b < len(increments):
            values[b] = 0.0
            current = 0.0
        previous = b + 1
    return values


def _corrupt(values: np.ndarray, times: np.ndarray, corrupt) -> None:
    for when, kind in corrupt:
        at = np.flatnonzero(times == epoch(when))
        if len(at) == 0:
            continue
        i = at[0]
        if kind == "nan":
            values[i] = np.nan
        elif kind == "inf":
            values[i] = np.inf
        elif kind == "backwards":
            values[i] = values[i - 1] - 1.0
        else:
            raise ValueError(f"unknown corruption {kind!r}")


def _empty_truth() -> pd.DataFrame:
    return pd.DataFrame(columns=HOST_CPU_COLUMNS)


PROJECT_MACHINES = {
    "IDAaaS": ["Muon", "SANS", "Excitations", "Artemis (Matlab)", "Reflectometry"],
    "CDAaaS": ["EPAC", "Gemini", "Vulcan"],
    "DDAaaS": ["Development"],
    "TDAaaS": ["Training"],
}
FIRST_NAMES = [
    "Ada",
    "Grace",
    "Alan",
    "Rosalind",
    "Dorothy",
    "James",
    "Mary",
    "Peter",
    "Kathleen",
    "Tim",
    "Sophie",
    "Chandra",
    "Ravi",
    "Lise",
    "Niels",
    "Emmy",
    "Paul",
    "Marie",
]


def demo_fleet(
    n_hosts: int,
    start: datetime,
    end: datetime,
    *,
    cpus: tuple[int, ...] = (2, 4, 8),
    modes: tuple[str, ...] = ALL_MODES,
    seed: int = 11,
    n_users: int = 18,
) -> Fleet:
    """A plausible fleet: hosts over several projects and machine types, some idle, some busy,
    some office-hours; some created or deleted during the period, a few reboots; workspaces
    whose owners change (sometimes mid-hour), hosts nobody holds, an owner unknown to `users`."""
    rng = np.random.default_rng(seed)
    hours = int((end - start).total_seconds() // 3600)
    pairs = [(p, m) for p, ms in PROJECT_MACHINES.items() for m in ms]
    users = [
        {
            "platform_name": f"u{n:05d}",
            "uid": 20000 + n,
            "name": f"{FIRST_NAMES[n % len(FIRST_NAMES)]} User{n}",
            "email": f"u{n:05d}@example.org",
            "tag": "demo",
        }
        for n in range(n_users)
    ]
    owners = [u["platform_name"] for u in users] + ["x99999"]  # x99999 is not in `users`
    hosts, workspaces = [], []
    for index in range(n_hosts):
        project, machine = pairs[index % len(pairs)]
        ip = f"172.16.{100 + index // 250}.{10 + index % 250}"
        form = index % 3
        instance = (ip, f"{ip}:9100", f"host-{ip.replace('.', '-')}.nubes.stfc.ac.uk:9100")[form]
        born = (
            start
            if rng.random() < 0.8
            else start + timedelta(hours=int(rng.integers(1, hours // 2)))
        )
        dies = (
            end
            if rng.random() < 0.85
            else born + timedelta(hours=int(rng.integers(24, max(25, hours // 2))))
        )
        dies = min(dies, end)
        life_hours = int((dies - born).total_seconds() // 3600)
        reboots = tuple(
            born + timedelta(minutes=5 * int(rng.integers(12, life_hours * 12 - 12)))
            for _ in range(int(rng.integers(0, 3)))
            if life_hours > 48
        )
        profile = rng.choice(["idle", "office", "busy"], p=[0.3, 0.4, 0.3])
        host_cpus = int(rng.choice(cpus))
        hosts.append(
            FleetHost(
                instance,
                project,
                machine,
                host_cpus,
                born,
                dies,
                str(profile),
                reboots=tuple(sorted(set(reboots))),
                memory_gib=4.0 * host_cpus,
            )
        )
        if index % 9 == 4:
            continue  # nobody ever holds this host
        registry_name = ip if index % 2 else f"host-{ip.replace('.', '-')}"
        cursor = born - timedelta(days=int(rng.integers(0, 5)))
        while cursor < dies:
            length = timedelta(minutes=int(rng.integers(6 * 60, 12 * 24 * 60)))
            # A workspace holds a VM that exists: from the host's birth until its deletion.
            created = max(cursor, born)
            acquired = (
                created + timedelta(minutes=int(rng.integers(0, 50)))
                if rng.random() < 0.3
                else None
            )
            deleted = min(created + length, dies) if dies < end else created + length
            doc = {
                "hostname": registry_name,
                "owner": str(rng.choice(owners)),
                "tag": "demo",
                "created_time": created,
            }
            if acquired:
                doc["acquired_time"] = acquired
            if deleted < end:
                doc["deleted_time"] = deleted
                doc["state"] = "deleted"
            else:
                doc["state"] = "running"
            workspaces.append(doc)
            # The next owner takes over at once (often mid-hour) or after a gap.
            cursor = deleted + timedelta(minutes=int(rng.choice([0, 0, 35, 180, 1440])))
    groups = [
        {
            "name": f"{p}_{m}",
            "gid": 30000 + n,
            "type": "machine",
            "members": [u["platform_name"] for u in users[n % 5 :: 5]],
        }
        for n, (p, m) in enumerate(pairs)
        if n % 4 != 3  # not every machine group has a registry document
    ]
    return Fleet(hosts, modes=modes, seed=seed, workspaces=workspaces, users=users, groups=groups)
