"""`carbon-pipeline ui`: Dagster's webserver and daemon on the fast instance, started and
stopped together.

Both get the environment every run worker inherits: the instance in PostgreSQL and Dagster's
batched event writes (a UI backfill without them took twice as long). `dagster dev` is not
used: it can take over 40 s to stop; here Ctrl-C or SIGTERM stops everything within seconds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests

from carbon_pipeline import instance

DEFINITIONS = ["-m", "carbon_pipeline.definitions"]
STOP_SECONDS = 5.0


def _stop(processes: list[subprocess.Popen]) -> None:
    """SIGTERM to every process group, then SIGKILL to what is left after STOP_SECONDS."""
    for process in processes:
        if process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + STOP_SECONDS
    for process in processes:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    for process in processes:
        try:  # the group: a webserver's code server, a daemon's run workers
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()


def _answers(url: str) -> bool:
    try:
        return requests.get(f"{url}/server_info", timeout=2).ok
    except requests.RequestException:
        return False


def serve(
    host: str = "127.0.0.1",
    port: int = 3000,
    *,
    verbose: bool = False,
    sqlite: bool = False,
    home: Path | None = None,
) -> int:
    """Run the webserver and the daemon until Ctrl-C or SIGTERM; 0 on a clean stop."""
    dagster_home = instance.prepare(home, sqlite=sqlite)
    log_file = dagster_home / "logs" / "ui.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    out = None if verbose else open(log_file, "ab")  # noqa: SIM115 - the children's lifetime
    bin_dir = Path(sys.executable).parent
    commands = [
        [str(bin_dir / "dagster-webserver"), *DEFINITIONS, "-h", host, "-p", str(port)],
        [str(bin_dir / "dagster-daemon"), "run", *DEFINITIONS],
    ]
    stopping = threading.Event()
    previous = {
        s: signal.signal(s, lambda *_: stopping.set()) for s in (signal.SIGINT, signal.SIGTERM)
    }
    processes = [
        subprocess.Popen(c, stdout=out, stderr=out, env=os.environ.copy(), start_new_session=True)
        for c in commands
    ]
    url = f"http://{host}:{port}"
    code, ready = 0, False
    try:
        while not stopping.is_set():
            exited = [
                c[0] for c, p in zip(commands, processes, strict=True) if p.poll() is not None
            ]
            if exited:
                print(f"error: {Path(exited[0]).name} exited; see {log_file}", file=sys.stderr)
                code = 1
                break
            if not ready and _answers(url):
                ready = True
                print(
                    f"Dagster UI on {url}  (instance {dagster_home}; log {log_file}; Ctrl-C to stop)",
                    flush=True,
                )
            stopping.wait(0.5)
    finally:
        _stop(processes)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if out:
            out.close()
    if code == 0:
        print("stopped", flush=True)
    return code
