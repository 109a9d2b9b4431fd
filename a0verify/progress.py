"""Progress lines on stderr: one line per stage with its elapsed time.

Levels: ``QUIET`` (0, nothing), ``NORMAL`` (1, a line per finished stage), ``VERBOSE`` (2, also a
line when a stage starts and the details stages report). On a terminal, a stage that runs longer
than a second shows a live line with its elapsed time until it ends (honest: no guessed
percentage). Nothing here writes to stdout, which stays for results.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

QUIET, NORMAL, VERBOSE = 0, 1, 2
_SPIN = "|/-\\"


class Progress:
    """Stage reporter for one command; ``timings`` collects {stage: seconds} as stages end."""

    def __init__(self, level: int = NORMAL, stream: TextIO | None = None) -> None:
        self.level = level
        self.stream = stream if stream is not None else sys.stderr
        self.timings: dict[str, float] = {}
        self._t0 = time.perf_counter()
        self._live = level >= NORMAL and bool(getattr(self.stream, "isatty", lambda: False)())

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # closed or broken stderr: progress is not essential
            pass

    def info(self, message: str) -> None:
        """A detail line (shown with ``-v``)."""
        if self.level >= VERBOSE:
            self._write(f"a0verify: {message}\n")

    def note(self, message: str) -> None:
        """A line shown unless ``-q``."""
        if self.level >= NORMAL:
            self._write(f"a0verify: {message}\n")

    @contextmanager
    def stage(self, name: str, what: str = "") -> Iterator[None]:
        """Time a stage; its seconds go to ``timings[name]`` (also when it fails). A stage that
        fails prints no line of its own: its error is the one line the user sees."""
        label = what or name
        if self.level >= VERBOSE:
            self._write(f"a0verify: {label} ...\n")
        stop = threading.Event()
        ticker = None
        if self._live:
            ticker = threading.Thread(target=self._tick, args=(label, stop), daemon=True)
            ticker.start()
        t0 = time.perf_counter()
        ok = False
        try:
            yield
            ok = True
        finally:
            secs = time.perf_counter() - t0
            self.timings[name] = self.timings.get(name, 0.0) + secs
            stop.set()
            if ticker is not None:
                ticker.join()
                self._write("\r\033[K")
            if ok and self.level >= NORMAL:  # a failure is reported by its own error line
                self._write(f"a0verify: {label:<34} {secs:6.1f} s\n")

    def _tick(self, label: str, stop: threading.Event) -> None:
        t0 = time.perf_counter()
        i = 0
        while not stop.wait(0.25):
            el = time.perf_counter() - t0
            if el >= 1.0:
                self._write(f"\r\033[Ka0verify: {label:<34} {el:6.1f} s {_SPIN[i % 4]}")
                i += 1


def silent() -> Progress:
    """A reporter that prints nothing (API calls, tests)."""
    return Progress(QUIET)
