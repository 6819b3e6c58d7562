"""What a person sees in the terminal: a progress bar per run (hours done of the total, rows/s,
time left), a line per finished run with its warnings, and a summary. Dagster's event log
stays in the instance, where the UI shows it; `--verbose` prints it too."""

from __future__ import annotations

import logging
import time
import warnings
from datetime import datetime

import dagster as dg
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from carbon_pipeline.assets.common import PROGRESS_LISTENERS

WARNINGS_SHOWN_PER_RUN = 5


def quiet(verbose: bool = False) -> dict:
    """Keep the terminal for people: no Dagster DEBUG events, alembic lines or Beta/Preview
    warnings unless verbose. Returns the run config that sets the runs' console logger."""
    for category in (dg.BetaWarning, dg.PreviewWarning, dg.SupersessionWarning):
        warnings.filterwarnings("ignore", category=category)
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for name in ("alembic", "dagster"):
        logging.getLogger(name).setLevel(logging.INFO if verbose else logging.WARNING)
    level = "DEBUG" if verbose else "CRITICAL"
    return {"loggers": {"console": {"config": {"log_level": level}}}}


def _when(t: datetime) -> str:
    return f"{t:%Y-%m-%dT%H:%MZ}"


def run_warnings(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    """The warnings the run's assets logged (not Dagster's own events), in order, once each."""
    said: list[str] = []
    for record in instance.all_logs(run_id):
        if record.is_dagster_event or record.level < logging.WARNING:
            continue
        if record.user_message not in said:
            said.append(record.user_message)
    return said


class RunReporter:
    """Draws a progress bar while a run of `stages` assets works through its hours (on a
    terminal only), then prints one line for it."""

    def __init__(self, stages: list[str], console: Console | None = None):
        self.stages = stages
        self.console = console or Console(highlight=False, soft_wrap=True)
        self._bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[hours]:>9}"),
            TextColumn("{task.fields[rate]:>14}"),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
            disable=not self.console.is_terminal,
        )
        self._task = None
        self._done: dict[str, tuple[float, int]] = {}
        self._began = 0.0
        self._hours = 0.0
        self.rows = 0
        self.total_rows = 0
        self.total_hours = 0.0
        self._first_began: float | None = None

    def __enter__(self) -> RunReporter:
        self._bar.start()
        PROGRESS_LISTENERS.append(self._on_progress)
        return self

    def __exit__(self, *exc) -> None:
        PROGRESS_LISTENERS.remove(self._on_progress)
        self._bar.stop()

    def start(self, start: datetime, end: datetime) -> None:
        self._hours = (end - start).total_seconds() / 3600
        self._done, self.rows, self._began = {}, 0, time.monotonic()
        if self._first_began is None:
            self._first_began = self._began
        self._task = self._bar.add_task(
            f"{_when(start)} .. {_when(end)}",
            total=self._hours * len(self.stages),
            hours=f"0/{self._hours:.0f} h",
            rate="",
        )

    def _on_progress(self, asset: str, hours_done: float, total: float, rows: int) -> None:
        if self._task is None or asset not in self.stages:
            return
        self._done[asset] = (hours_done, rows)
        self.rows = sum(r for _, r in self._done.values())
        elapsed = max(time.monotonic() - self._began, 1e-9)
        # A run's hours are done once its last stage has done them.
        last_stage = self._done.get(self.stages[-1], (0.0, 0))[0]
        self._bar.update(
            self._task,
            completed=sum(h for h, _ in self._done.values()),
            hours=f"{last_stage:.0f}/{self._hours:.0f} h",
            rate=f"{self.rows / elapsed:,.0f} rows/s",
        )

    def finish(
        self,
        start: datetime,
        end: datetime,
        run_id: str,
        success: bool,
        said: list[str],
        error: str | None = None,
    ) -> None:
        if self._task is not None:
            self._bar.remove_task(self._task)
            self._task = None
        seconds = time.monotonic() - self._began
        self.total_rows += self.rows
        self.total_hours += self._hours if success else 0
        state = "done  " if success else "FAILED"
        self.console.print(
            f"{_when(start)} .. {_when(end)}  {state} {seconds:6.1f} s  {self.rows:>10,} rows  "
            f"{self.rows / max(seconds, 1e-9):>8,.0f} rows/s  run {run_id[:8]}",
            markup=False,
        )
        for message in said[:WARNINGS_SHOWN_PER_RUN]:
            self.console.print(f"    warning: {message}", markup=False, soft_wrap=True)
        if len(said) > WARNINGS_SHOWN_PER_RUN:
            self.console.print(
                f"    ... and {len(said) - WARNINGS_SHOWN_PER_RUN} more warnings (see the run in the UI)",
                markup=False,
            )
        if error:
            self.console.print(f"    error: {error}", markup=False, soft_wrap=True)

    def summary(self, runs: int, failed: int) -> None:
        seconds = time.monotonic() - (self._first_began or time.monotonic())
        self.console.print(
            f"{runs} run(s), {self.total_hours:,.0f} hours, {self.total_rows:,} rows in "
            f"{seconds:.1f} s ({self.total_rows / max(seconds, 1e-9):,.0f} rows/s)"
            + (f"; {failed} FAILED" if failed else ""),
            markup=False,
        )
