"""Progress of long commands: rich bars in a terminal, plain timed lines in a CI log.

Outside a terminal rich hides its bars, so a long scan printed nothing for many minutes and a CI
log could not tell a working job from a hung one. :func:`progress_reporter` picks the form once:

* a terminal: rich bars (description, bar, done/total, note, elapsed, remaining);
* anything else: one line when a phase starts, one about every ``interval_s`` seconds while it
  runs (done/total, elapsed, ETA) and one when it completes. A heartbeat thread prints the
  periodic line even when a phase reports no step for long (eigenfaces reports all its targets
  at the end);
* ``quiet``: nothing.

Every command uses it; a phase is a callable ``advance(step=1)``, which is also the shape
``run_scan``'s progress factory and the ``on_progress`` callbacks expect.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from fvr_audit.cli.console import console as default_console
from fvr_audit.cli.console import is_terminal

#: Seconds between two plain progress lines of one phase (a CI log shows the job is alive).
PLAIN_INTERVAL_S = 30.0


class Phase(ABC):
    """One counted piece of work. Call it to advance; ``update`` sets the count or the note."""

    @abstractmethod
    def __call__(self, step: float = 1) -> None: ...

    @abstractmethod
    def update(self, *, completed: int | None = None, note: str | None = None) -> None: ...


class ProgressReporter(ABC):
    @abstractmethod
    def phase(self, description: str, total: int) -> Phase:
        """Start a phase of ``total`` steps."""

    @abstractmethod
    def log(self, message: str) -> None:
        """Print a line (above the bars in a terminal)."""


@contextlib.contextmanager
def progress_reporter(
    *,
    quiet: bool = False,
    console: Console | None = None,
    interval_s: float | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[ProgressReporter]:
    """The reporter for this run's output: rich bars, plain lines, or nothing (``quiet``)."""
    console = console or default_console
    if quiet:
        yield _Silent()
    elif is_terminal(console):
        columns = (
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[note]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=console) as bars:
            yield _RichReporter(bars)
    else:
        reporter = LineReporter(
            write=lambda line: _write(console, line),
            interval_s=PLAIN_INTERVAL_S if interval_s is None else interval_s,
            clock=clock,
        )
        with _heartbeat(reporter):
            yield reporter


@contextlib.contextmanager
def _heartbeat(reporter: LineReporter) -> Iterator[None]:
    """Call ``reporter.tick()`` in the background, a few times per interval, until the block ends."""
    stop = threading.Event()
    period = min(max(reporter.interval_s / 4, 0.01), 5.0)

    def beat() -> None:
        while not stop.wait(period):
            reporter.tick()

    thread = threading.Thread(target=beat, name="fvr-audit-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


class LineReporter(ProgressReporter):
    """Plain lines for a log: phase start, every ``interval_s`` seconds of work, and completion."""

    def __init__(
        self,
        write: Callable[[str], None],
        *,
        interval_s: float = PLAIN_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._write = write
        self.interval_s = interval_s
        self._clock = clock
        # The heartbeat thread and the work report to the same phase.
        self._lock = threading.RLock()
        self._current: _LinePhase | None = None

    def phase(self, description: str, total: int) -> Phase:
        with self._lock:
            self._current = _LinePhase(self, description, total)
            return self._current

    def log(self, message: str) -> None:
        with self._lock:
            self._write(message)

    def tick(self) -> None:
        """Print the running phase's line if ``interval_s`` has passed since its last one."""
        with self._lock:
            if self._current is not None:
                self._current.report()


class _LinePhase(Phase):
    def __init__(self, reporter: LineReporter, description: str, total: int):
        self._reporter = reporter
        self._description = description
        self._total = max(0, int(total))
        self._done = 0
        self._note = ""
        self._started = self._last_line = reporter._clock()
        self._finished = False
        reporter._write(f"{description}: started, {self._total} to do")

    def __call__(self, step: float = 1) -> None:
        self._set(self._done + step)

    def update(self, *, completed: int | None = None, note: str | None = None) -> None:
        if note is not None:
            self._note = note
        if completed is not None:
            self._set(completed)

    def _set(self, done: float) -> None:
        with self._reporter._lock:
            if self._finished:
                return
            # an attack reports fractions of targets while it runs; their sum lands on whole targets
            self._done = round(done) if abs(done - round(done)) < 1e-6 else done
            if self._total and self._done >= self._total:
                self._finished = True
                elapsed = self._reporter._clock() - self._started
                self._reporter._write(
                    f"{self._description}: {self._total}/{self._total} done in {clock_text(elapsed)}{self._note_text()}"
                )
            else:
                self.report()

    def report(self) -> None:
        """The periodic line, when ``interval_s`` has passed since this phase's last line."""
        with self._reporter._lock:
            now = self._reporter._clock()
            if self._finished or now - self._last_line < self._reporter.interval_s:
                return
            self._last_line = now
            elapsed = now - self._started
            eta = elapsed / self._done * (self._total - self._done) if self._done else None
            share = f" ({self._done / self._total:.0%})" if self._total else ""
            self._reporter._write(
                f"{self._description}: {int(self._done)}/{self._total}{share}, elapsed {clock_text(elapsed)}, "
                f"ETA {'unknown' if eta is None else clock_text(eta)}{self._note_text()}"
            )

    def _note_text(self) -> str:
        return f"; {self._note}" if self._note else ""


class _RichReporter(ProgressReporter):
    def __init__(self, bars: Progress):
        self._bars = bars

    def phase(self, description: str, total: int) -> Phase:
        return _RichPhase(self._bars, self._bars.add_task(description, total=total, note=""))

    def log(self, message: str) -> None:
        self._bars.console.print(message)


class _RichPhase(Phase):
    def __init__(self, bars: Progress, task_id):
        self._bars = bars
        self._task_id = task_id

    def __call__(self, step: float = 1) -> None:
        self._bars.advance(self._task_id, step)

    def update(self, *, completed: int | None = None, note: str | None = None) -> None:
        fields = {} if note is None else {"note": note}
        self._bars.update(self._task_id, completed=completed, **fields)


class _Silent(ProgressReporter):
    def phase(self, description: str, total: int) -> Phase:
        return _SilentPhase()

    def log(self, message: str) -> None:
        pass


class _SilentPhase(Phase):
    def __call__(self, step: float = 1) -> None:
        pass

    def update(self, *, completed: int | None = None, note: str | None = None) -> None:
        pass


def clock_text(seconds: float) -> str:
    """Seconds as h:mm:ss, the way rich's elapsed column shows them.

    >>> clock_text(65.4), clock_text(3725)
    ('0:01:05', '1:02:05')
    """
    whole = int(round(seconds))
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


def _write(console: Console, line: str) -> None:
    # The console's file at the time of writing (sys.stderr may be replaced, e.g. by a test runner).
    stream = console.file or sys.stderr
    stream.write(line + "\n")
    stream.flush()
