"""Run a function in a forked worker process while this process goes on (report figures: the
2-D figures and the 3-D views are drawn at the same time on 2 cores).

The worker is forked, so it sees this process's data without copying or pickling its inputs;
only the result travels back (pickled, through a pipe). Whenever a worker cannot be used
(no ``fork`` on the platform, a single usable CPU, ``A0VERIFY_SERIAL=1`` in the environment) or
it fails or dies, :meth:`ForkJob.result` runs the function in this process instead, so the
outcome is the same either way; an exception raised by the function then propagates from
``result()`` as it would from a direct call.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")

#: Environment variable that turns workers off (any non-empty value).
SERIAL_ENV = "A0VERIFY_SERIAL"
#: Scheduling niceness added in workers.
WORKER_NICE = 5


def parallel_ok() -> bool:
    """True when forked workers are available and worthwhile (>= 2 usable CPUs)."""
    import multiprocessing as mp

    if os.environ.get(SERIAL_ENV) or "fork" not in mp.get_all_start_methods():
        return False
    try:
        return len(os.sched_getaffinity(0)) >= 2
    except AttributeError:  # pragma: no cover - platforms without sched_getaffinity
        return (os.cpu_count() or 1) >= 2


class WarmWorker(Generic[T]):
    """A forked worker started *before* its inputs exist: it runs ``prepare()`` (e.g. imports
    and set-up, on the other core while this process reads and computes), then waits for the
    arguments of ``fn`` (:meth:`submit`, pickled through a pipe) and sends back ``fn(*args)``.

    :meth:`result` falls back to ``fn(*args)`` in this process whenever the worker is missing,
    failed or died; :meth:`close` stops a worker that was never given work. Not thread-safe."""

    def __init__(self, prepare: Callable[[], object], fn: Callable[..., T],
                 nice: int = WORKER_NICE) -> None:
        self._fn = fn
        self._args: tuple[Any, ...] | None = None
        self._proc: Any = None
        self._conn: Any = None
        self._value: T | None = None
        self._done = False
        if not parallel_ok():
            return
        import multiprocessing as mp
        import warnings

        ctx = mp.get_context("fork")
        here, there = ctx.Pipe(duplex=True)
        proc = ctx.Process(target=_warm_worker, args=(there, prepare, fn, nice), daemon=True,
                           name="a0verify-warm-worker")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads (3.12+)
                proc.start()
        except OSError:
            here.close()
            there.close()
            return
        there.close()
        self._proc, self._conn = proc, here

    @property
    def in_worker(self) -> bool:
        """Whether a worker process is running (or ran) for this job."""
        return self._proc is not None

    def submit(self, *args: Any) -> None:
        """Hand the arguments to the worker (once); they must be picklable."""
        if self._args is not None:
            raise RuntimeError("WarmWorker.submit called twice")
        self._args = args
        if self._proc is not None:
            try:
                self._conn.send(args)
            except Exception:  # e.g. unpicklable arguments: result() computes them here
                self._stop()

    def result(self, timeout_s: float = 300.0) -> T:
        """``fn(*args)`` of the submitted arguments (waits for the worker)."""
        if self._done:
            return self._value  # type: ignore[return-value]
        if self._args is None:
            raise RuntimeError("WarmWorker.result called before submit")
        got: tuple[bool, Any] = (False, None)
        if self._proc is not None:
            try:
                if self._conn.poll(timeout_s):
                    status, payload = self._conn.recv()
                    got = (status == "ok", payload)
            except (EOFError, OSError):
                pass
            self._stop()
        self._value = got[1] if got[0] else self._fn(*self._args)
        self._done = True
        return self._value

    def cancel(self) -> None:
        """Kill the worker now, whatever it is doing (its result is no longer wanted);
        :meth:`result` then computes it in this process if it is asked for after all."""
        if self._proc is not None and self._proc.is_alive():
            self._proc.kill()
        self._stop()
        self._proc = None

    def close(self) -> None:
        """Stop the worker if it still runs; one that was never given work is killed at once
        (e.g. after an input error)."""
        if self._proc is not None and self._args is None and self._proc.is_alive():
            self._proc.kill()
        self._stop()

    def _stop(self) -> None:
        if self._proc is None:
            return
        with contextlib.suppress(OSError):
            self._conn.close()
        self._proc.join(2.0)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join()


def _warm_worker(conn: Any, prepare: Callable[[], object], fn: Callable[..., Any],
                 nice: int) -> None:
    if nice:
        with contextlib.suppress(OSError, AttributeError):
            os.nice(nice)  # on a busy machine the main process (margin compute) goes first
    try:
        with contextlib.suppress(Exception):
            prepare()
        try:
            args = conn.recv()
        except (EOFError, OSError):
            return  # closed without work
        try:
            conn.send(("ok", fn(*args)))
        except BaseException as exc:  # the parent computes the result itself on any failure
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


def _nothing() -> None:
    return None


class ForkJob(WarmWorker[T]):
    """``fn(*args)`` started in a forked worker now; :meth:`result` returns its value (computed
    here when the worker is missing, failed or died). The worker must only run code that is
    safe after ``fork`` (NumPy, VTK, matplotlib, and ITK filters, whose thread pool is
    re-created in the child)."""

    def __init__(self, fn: Callable[..., T], *args: Any, nice: int = WORKER_NICE) -> None:
        # the arguments reach the worker through the fork itself (not pickled): large images
        # cost nothing to hand over. ``nice``: scheduling niceness added in the worker (0 for
        # work as urgent as this process's own)
        super().__init__(_nothing, functools.partial(fn, *args), nice)
        self.submit()
