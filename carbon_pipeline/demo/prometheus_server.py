"""A private Prometheus (Debian's package) on a free loopback port, loaded with generated history."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import requests

from carbon_pipeline.demo.apt import apt_install

PROMETHEUS_BIN = shutil.which("prometheus") or "/usr/bin/prometheus"
PROMTOOL_BIN = shutil.which("promtool") or "/usr/bin/promtool"


class PrometheusSetupError(RuntimeError):
    """Prometheus or promtool could not be installed, loaded or started."""


def ensure_installed() -> None:
    """Install Debian's prometheus package (without recommends) if promtool is missing."""
    if Path(PROMTOOL_BIN).exists() and Path(PROMETHEUS_BIN).exists():
        return
    if shutil.which("apt-get") is None:
        raise PrometheusSetupError("prometheus is not installed and apt-get is unavailable")
    try:
        apt_install("prometheus")
    except subprocess.CalledProcessError as exc:
        raise PrometheusSetupError(
            f"could not install Debian's prometheus package: {exc.stderr.strip()[-500:]}"
        ) from exc


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class BlockConversion:
    """`promtool tsdb create-blocks-from openmetrics` of one file into data_dir, in the
    background; wait() raises if it failed and deletes the file once converted. One block per
    file: the hidden --max-block-duration flag spares promtool re-reading the file for every
    2-hour block."""

    def __init__(self, openmetrics_file: Path, data_dir: Path):
        data_dir.mkdir(parents=True, exist_ok=True)
        self.file = openmetrics_file
        self.process = subprocess.Popen(
            [
                PROMTOOL_BIN,
                "tsdb",
                "create-blocks-from",
                "openmetrics",
                "--max-block-duration=8760h",
                str(openmetrics_file),
                str(data_dir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )

    def wait(self) -> None:
        _, stderr = self.process.communicate()
        if self.process.returncode != 0:
            raise PrometheusSetupError(f"promtool failed on {self.file}: {stderr[-2000:]}")
        self.file.unlink()


class PrometheusServer:
    """`prometheus` serving data_dir on 127.0.0.1:port until stopped."""

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        log_file: Path | None = None,
        max_samples: int = 200_000_000,
    ):
        self.data_dir = Path(data_dir)
        self.max_samples = max_samples
        self.port = port or free_port()
        self.log_file = log_file or self.data_dir.parent / "prometheus.log"
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> PrometheusServer:
        config = self.data_dir.parent / "prometheus.yml"
        config.write_text("global:\n  scrape_interval: 1m\nscrape_configs: []\n")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_file, "ab")  # noqa: SIM115 - kept open for the process' lifetime
        self.process = subprocess.Popen(
            [
                PROMETHEUS_BIN,
                f"--config.file={config}",
                f"--storage.tsdb.path={self.data_dir}",
                "--storage.tsdb.retention.time=100y",
                f"--web.listen-address=127.0.0.1:{self.port}",
                f"--query.max-samples={self.max_samples}",
                "--web.enable-lifecycle",
            ],
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise PrometheusSetupError(f"prometheus exited; see {self.log_file}")
            try:
                if requests.get(f"{self.url}/-/ready", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.2)
        self.stop()
        raise PrometheusSetupError(f"prometheus not ready after {timeout} s; see {self.log_file}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
