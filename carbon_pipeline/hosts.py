"""One identity per VM, whatever form Prometheus or the registry names it in."""

from __future__ import annotations

import re

_DASHED_IP = re.compile(r"^host-(\d{1,3})-(\d{1,3})-(\d{1,3})-(\d{1,3})(?:\..*)?$")
_DOTTED_IP = re.compile(r"^\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}$")


def normalise_host(raw: str) -> str:
    """The canonical identity of a host.

    `172.16.100.50`, `172.16.100.50:9100`, `host-172-16-100-50`,
    `host-172-16-100-50.nubes.stfc.ac.uk` and `host-172-16-100-50.nubes.stfc.ac.uk:9100`
    all give `172.16.100.50`. A name that encodes no IPv4 address keeps its full lower-case
    name without the port (`[v6]:9100` gives `v6`).
    """
    name = raw.strip().lower()
    if not name:
        raise ValueError("empty host name")
    if name.startswith("["):  # [ipv6]:port
        return name[1 : name.index("]")] if "]" in name else name[1:]
    if name.count(":") == 1:
        name = name.split(":", 1)[0]
    if _DOTTED_IP.match(name):
        return name
    dashed = _DASHED_IP.match(name)
    if dashed:
        return ".".join(str(int(part)) for part in dashed.groups())
    return name
