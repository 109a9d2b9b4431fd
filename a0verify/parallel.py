"""The one place for concurrency: background processes and threads on ``concurrent.futures``.

Used where a stage has independent work that overlaps on 2 cores (benchmark rows in
``benchmarks/RESULTS*.md`` justify each use):

* the registration's uncertainty restart runs in a worker process beside the main elastix run;
* the report's 2-D figures and 3-D views are drawn in worker processes while files are written;
* modules are loaded in a background thread while images are read (:func:`in_thread`).

Workers are separate processes started by ``forkserver`` (``spawn`` where that is missing): they
never inherit this process's thread pools (ITK, Numba, OpenMP), so there is no fork-after-threads
hazard. A :class:`Worker` can be started early with a *warm-up* (imports, an off-screen GL
context) that overlaps the caller's own work; arguments and results travel pickled.

Failures are never silent: an exception raised by the task propagates from
:meth:`Task.result` as from a direct call; a worker *process* that dies or cannot start makes
:meth:`Task.result` run the task in this process and append a warning naming the task to the
``warnings`` list it was given (the report shows it). ``A0VERIFY_SERIAL=1`` (or a single usable
CPU) runs every task in this process, when its result is asked for.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import multiprocessing as mp
import os
import threading
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")

#: Environment variable that turns worker processes off (any non-empty value).
SERIAL_ENV = "A0VERIFY_SERIAL"


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask; ``os.cpu_count()`` where unknown)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - platforms without sched_getaffinity
        return os.cpu_count() or 1


def limit_threads(threads: int | None) -> None:
    """Bound SimpleITK, ITK/elastix (global defaults) and Numba to ``threads`` threads, once, where
    a command or API call starts (``None`` leaves the defaults: all usable CPUs)."""
    if not threads:
        return
    import SimpleITK as sitk

    n = int(threads)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(n)
    try:
        import numba

        numba.set_num_threads(min(n, int(numba.config.NUMBA_NUM_THREADS)))  # type: ignore[attr-defined]
    except ImportError:  # pragma: no cover - numba is a dependency
        pass
    from a0verify.registration import elastix_backend

    elastix_backend.set_threads(n)


def enabled() -> bool:
    """True when worker processes are available and worthwhile (>= 2 usable CPUs and
    ``A0VERIFY_SERIAL`` unset)."""
    return not os.environ.get(SERIAL_ENV) and usable_cpus() >= 2


def _context() -> Any:
    methods = mp.get_all_start_methods()
    return mp.get_context("forkserver" if "forkserver" in methods else "spawn")


def _start_worker(warm: Callable[[], object] | None, nice: int) -> None:
    """Initializer of a worker process: lower its priority, then warm it up (best effort: a
    failed warm-up only means the task pays that cost itself)."""
    if nice:
        with contextlib.suppress(OSError, AttributeError):
            os.nice(nice)
    if warm is not None:
        with contextlib.suppress(Exception):
            warm()


def _ready() -> bool:
    return True


def _timed(fn: Callable[..., T], *args: Any) -> tuple[T, float, float]:
    """``fn(*args)`` with its wall and CPU seconds (measured where it runs)."""
    t0, c0 = time.perf_counter(), time.process_time()
    value = fn(*args)
    return value, time.perf_counter() - t0, time.process_time() - c0


class Task(Generic[T]):
    """A task running in a worker process or thread (or to be run here). After
    :meth:`result`: ``seconds`` and ``cpu_seconds`` it took, ``where`` it ran ("worker",
    "thread" or "here")."""

    def __init__(self, name: str, fn: Callable[..., T], args: tuple[Any, ...],
                 future: cf.Future[tuple[T, float, float]] | None, where: str) -> None:
        self.name = name
        self._fn, self._args, self._future = fn, args, future
        self.where = where
        self.seconds = 0.0
        self.cpu_seconds = 0.0
        self._done = False
        self._value: T | None = None

    def done(self) -> bool:
        """Whether the result is available without waiting."""
        return self._done or (self._future is not None and self._future.done())

    def result(self, timeout_s: float | None = 1800.0,
               warnings: list[str] | None = None) -> T:
        """The task's value (waits for it). An exception raised by the task is raised here. When
        the worker process died or could not take the task, the task runs in this process and
        a warning naming it goes to ``warnings`` (when given)."""
        if self._done:
            return self._value  # type: ignore[return-value]
        out: tuple[T, float, float] | None = None
        if self._future is not None:
            try:
                out = self._future.result(timeout_s)
            except (cf.process.BrokenProcessPool, cf.TimeoutError, OSError) as exc:
                self._future.cancel()
                reason = type(exc).__name__ + (f": {exc}" if str(exc) else "")
                if warnings is not None:
                    warnings.append(f"{self.name}: worker process failed ({reason[:160]}); "
                                    "computed in the main process instead")
                self.where = "here"
        if out is None:
            out = _timed(self._fn, *self._args)
            self.where = "here"
        self._value, self.seconds, self.cpu_seconds = out
        self._done = True
        self._args, self._future = (), None  # let the inputs go
        return self._value


class Worker:
    """One background worker process, started now (its start-up and ``warm`` overlap the
    caller's work) and given tasks with :meth:`submit`. Without worker processes
    (:func:`enabled` false, or the start failed) tasks run in this process when their result is
    asked for. ``nice``: scheduling niceness added in the worker (work less urgent than the
    caller's own); ``start=False`` makes a worker that runs every task here. Use as a context
    manager or call :meth:`close`."""

    def __init__(self, name: str, warm: Callable[[], object] | None = None,
                 nice: int = 0, *, start: bool = True) -> None:
        self.name = name
        self._warm, self._nice = warm, nice
        self._pool: cf.ProcessPoolExecutor | None = None
        self._used = False
        if start and enabled():
            self._start()

    def _start(self) -> None:
        try:
            self._pool = cf.ProcessPoolExecutor(1, mp_context=_context(),
                                                initializer=_start_worker,
                                                initargs=(self._warm, self._nice))
            self._pool.submit(_ready)  # start the process (and its warm-up) now
        except (OSError, RuntimeError):
            self._pool = None

    @property
    def active(self) -> bool:
        """Whether tasks go to a worker process (False: they run in this process)."""
        return self._pool is not None

    def submit(self, fn: Callable[..., T], *args: Any, name: str | None = None) -> Task[T]:
        """Start ``fn(*args)`` in the worker (module-level ``fn``; picklable arguments)."""
        label = name or self.name
        if self._pool is None:
            return Task(label, fn, args, None, "here")
        self._used = True
        try:
            fut = self._pool.submit(_timed, fn, *args)
        except (cf.process.BrokenProcessPool, RuntimeError, OSError):
            return Task(label, fn, args, None, "here")
        return Task(label, fn, args, fut, "worker")

    def close(self) -> None:
        """Let the worker finish the tasks it was given and exit (without waiting for them:
        their :meth:`Task.result` still works); a worker never given a task is stopped at once
        (e.g. after an input error, so the command returns without waiting for its warm-up)."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        if not self._used:
            _kill(pool)
        pool.shutdown(wait=False, cancel_futures=not self._used)

    def reset(self) -> None:
        """Stop the worker now, abandoning its tasks (their results are no longer wanted), and
        start a fresh one with the same warm-up."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        _kill(pool)
        pool.shutdown(wait=False, cancel_futures=True)
        self._used = False
        self._start()

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _kill(pool: cf.ProcessPoolExecutor) -> None:
    # concurrent.futures has no public way to stop a pool's processes before Python 3.14
    # (terminate_workers); its process table is the same from 3.11 to 3.13
    for proc in list(getattr(pool, "_processes", {}).values()):
        with contextlib.suppress(OSError, AttributeError):
            proc.kill()


def run_in_worker(name: str, fn: Callable[..., T], *args: Any, nice: int = 0) -> Task[T]:
    """``fn(*args)`` in a new worker process of its own (which exits once the task is done)."""
    with Worker(name, nice=nice) as worker:
        return worker.submit(fn, *args)


def in_thread(name: str, fn: Callable[..., T], *args: Any) -> Task[T]:
    """``fn(*args)`` in a daemon thread of this process (for work that releases the GIL or
    waits on I/O, e.g. loading extension modules while images are read)."""
    fut: cf.Future[tuple[T, float, float]] = cf.Future()

    def run() -> None:
        try:
            fut.set_result(_timed(fn, *args))
        except BaseException as exc:  # handed to whoever asks for the result
            fut.set_exception(exc)

    threading.Thread(target=run, name=f"a0verify-{name}", daemon=True).start()
    return Task(name, fn, args, fut, "thread")
