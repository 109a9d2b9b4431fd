"""a0verify.forkjob: functions run in forked workers give the same values as in-process calls,
and every failure of a worker falls back to computing here."""

from __future__ import annotations

import os
import time

import pytest

from a0verify import forkjob


def _pid_and_sum(a: int, b: int) -> tuple[int, int]:
    return os.getpid(), a + b


def _fails() -> None:
    raise ValueError("bad input to the figure")


def test_forkjob_runs_in_a_worker_and_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    job = forkjob.ForkJob(_pid_and_sum, 2, 3)
    pid, total = job.result()
    assert total == 5
    assert (pid != os.getpid()) == job.in_worker == forkjob.parallel_ok()
    assert job.result() == (pid, 5)  # cached
    # a worker that dies without answering: computed here
    monkeypatch.setattr(forkjob, "_warm_worker", lambda conn, prepare, fn: conn.close())
    assert forkjob.ForkJob(_pid_and_sum, 1, 2).result() == (os.getpid(), 3)
    monkeypatch.undo()
    monkeypatch.setenv(forkjob.SERIAL_ENV, "1")
    serial = forkjob.ForkJob(_pid_and_sum, 1, 1)
    assert not serial.in_worker
    assert serial.result() == (os.getpid(), 2)
    monkeypatch.delenv(forkjob.SERIAL_ENV)
    with pytest.raises(ValueError, match="bad input"):  # the function's own error, re-raised
        forkjob.ForkJob(_fails).result()


def test_warm_worker_prepares_then_computes(tmp_path: os.PathLike[str]) -> None:
    marker = os.path.join(str(tmp_path), "prepared")

    def prepare() -> None:
        with open(marker, "w") as fh:
            fh.write(str(os.getpid()))

    w = forkjob.WarmWorker(prepare, _pid_and_sum)
    w.submit(20, 22)
    pid, total = w.result()
    assert total == 42
    if forkjob.parallel_ok():
        assert w.in_worker and pid != os.getpid()
        with open(marker) as fh:
            assert int(fh.read()) == pid  # prepare ran in the same worker, before fn
    with pytest.raises(RuntimeError):
        w.submit(1, 2)
    with pytest.raises(RuntimeError):
        forkjob.WarmWorker(prepare, _pid_and_sum).result()


def test_warm_worker_fallbacks() -> None:
    # unpicklable arguments: computed here
    w = forkjob.WarmWorker(lambda: None, lambda f: f(3))
    w.submit(lambda x: x * 2)
    assert w.result() == 6
    # an error in fn is re-raised from result()
    w2 = forkjob.WarmWorker(lambda: None, _fails)
    w2.submit()
    with pytest.raises(ValueError, match="bad input"):
        w2.result()
    # never given work: close() stops a worker still preparing at once
    w3 = forkjob.WarmWorker(lambda: time.sleep(30), _pid_and_sum)
    t0 = time.perf_counter()
    w3.close()
    assert time.perf_counter() - t0 < 5.0


def test_forkjob_arguments_are_not_pickled() -> None:
    """ForkJob hands its arguments over through the fork: unpicklable ones still run there."""
    job = forkjob.ForkJob(lambda f: (os.getpid(), f(2)), lambda x: x + 1)
    pid, value = job.result()
    assert value == 3
    assert (pid != os.getpid()) == forkjob.parallel_ok()
