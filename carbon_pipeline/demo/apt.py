"""Installing a Debian package the demo or the tests need, once, however many processes ask."""

from __future__ import annotations

import subprocess

# Parallel test workers may ask at once: each waits for dpkg's lock instead of failing on it,
# then finds the package installed.
_APT = ["apt-get", "-o", "DPkg::Lock::Timeout=900"]
_ENV = {"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}


def apt_install(package: str) -> None:
    """`apt-get install` the package without recommends (after `apt-get update` if the
    package lists do not know it yet); raises CalledProcessError with apt's output."""
    install = [*_APT, "install", "-y", "--no-install-recommends", package]
    first = subprocess.run(install, capture_output=True, text=True, env=_ENV)
    if first.returncode == 0:
        return
    subprocess.run([*_APT, "update"], check=True, capture_output=True, text=True, env=_ENV)
    subprocess.run(install, check=True, capture_output=True, text=True, env=_ENV)
