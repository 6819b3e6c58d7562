"""The test fleet: a few hosts over two days whose every number is known.

Host .10 runs both cpus at exactly 50% all the time; its owner changes at 10:20 (mid-hour).
Host .11 reboots; .12 lives for 24 hours only and its owner is missing from `users`; .13 has
label values with quotes, a backslash and non-ASCII and is never owned; .14 idles. Each host
has its own memory size (8, 16, 4, 2 and 6.5 GiB). The
registry also holds a workspace on .99, a host Prometheus has never seen.
"""

from __future__ import annotations

from datetime import UTC, datetime

from carbon_pipeline.demo.fleet import Fleet, FleetHost

WINDOW_START = datetime(2025, 3, 3, 0, tzinfo=UTC)
WINDOW_END = datetime(2025, 3, 5, 0, tzinfo=UTC)
ODD_MACHINE = 'Dev "quoted" \\ back ünï'


def t(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def build_fleet() -> Fleet:
    hosts = [
        FleetHost(
            "172.16.100.10:9100",
            "IDAaaS",
            "Muon",
            2,
            WINDOW_START,
            WINDOW_END,
            "constant:0.5",
            memory_gib=8.0,
        ),
        FleetHost(
            "host-172-16-100-11.nubes.stfc.ac.uk:9100",
            "IDAaaS",
            "SANS",
            4,
            WINDOW_START,
            WINDOW_END,
            "office",
            reboots=(t("2025-03-03T13:25"), t("2025-03-04T08:00")),
            memory_gib=16.0,
        ),
        FleetHost(
            "172.16.100.12:9100",
            "CDAaaS",
            "Artemis (Matlab)",
            2,
            t("2025-03-03T06:00"),
            t("2025-03-04T06:00"),
            "busy",
            host_label="host-172-16-100-12.nubes.stfc.ac.uk",
            memory_gib=4.0,
        ),
        FleetHost(
            "172.16.100.13",
            "DDAaaS",
            ODD_MACHINE,
            1,
            WINDOW_START,
            WINDOW_END,
            "constant:0.25",
            memory_gib=2.0,
        ),
        FleetHost(
            "172.16.100.14:9100",
            "IDAaaS",
            "Muon",
            2,
            WINDOW_START,
            WINDOW_END,
            "idle",
            memory_gib=6.5,
        ),
    ]
    workspaces = [
        {
            "hostname": "172.16.100.10",
            "owner": "alice",
            "state": "deleted",
            "created_time": t("2025-03-02T22:00"),
            "deleted_time": t("2025-03-03T10:20"),
        },
        {
            "hostname": "host-172-16-100-10",
            "owner": "bob",
            "state": "running",
            "created_time": t("2025-03-03T10:00"),
            "acquired_time": t("2025-03-03T10:20"),
        },
        {
            "hostname": "host-172-16-100-11",
            "owner": "carol",
            "state": "deleted",
            "created_time": t("2025-03-01T00:00"),
            "deleted_time": t("2025-03-04T12:00"),
        },
        {
            "hostname": "172.16.100.12",
            "owner": "dave",
            "state": "deleted",
            "created_time": t("2025-03-03T06:30"),
            "deleted_time": t("2025-03-03T20:45"),
        },
        {
            "hostname": "172.16.100.14",
            "owner": "alice",
            "state": "running",
            "created_time": t("2025-03-02T00:00"),
        },
        # A host the registry knows but Prometheus does not: it must change nothing.
        {
            "hostname": "host-172-16-100-99",
            "owner": "erin",
            "state": "running",
            "created_time": t("2025-03-01T00:00"),
        },
    ]
    users = [
        {
            "platform_name": "alice",
            "uid": 1001,
            "name": "Alice Archer",
            "email": "alice@example.org",
        },
        {"platform_name": "bob", "uid": 1002, "name": "Bob Baker", "email": "bob@example.org"},
        {
            "platform_name": "carol",
            "uid": 1003,
            "name": "Carol Cooper",
            "email": "carol@example.org",
        },
    ]
    groups = [
        {"name": "IDAaaS_Muon", "gid": 5001, "type": "machine", "members": ["alice", "bob"]},
    ]
    return Fleet(hosts, workspaces=workspaces, users=users, groups=groups)
