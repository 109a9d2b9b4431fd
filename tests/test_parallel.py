"""a0verify.parallel: tasks give the same values in a worker process as here; failures are never
silent (the task's own exception is raised; a dead worker is reported and the task run here)."""

from __future__ import annotations

import os
import time

import pytest

from a0verify import parallel


def _pid_and_sum(a: int, b: int) -> tuple[int, int]:
    return os.getpid(), a + b


def _fails() -> None:
    raise ValueError("bad input to the figure")


def _die_unless(pid: int) -> int:
    """Kills the worker process it runs in; returns normally in process ``pid``."""
    if os.getpid() != pid:
        os._exit(3)
    return 7


def _write_pid(path: str) -> None:
    with open(path, "w") as fh:
        fh.write(str(os.getpid()))


def _sleep_forever() -> None:
    time.sleep(60)


def test_worker_runs_tasks_in_another_process() -> None:
    with parallel.Worker("test") as w:
        assert w.active == parallel.enabled()
        task = w.submit(_pid_and_sum, 2, 3)
        pid, total = task.result()
        again = w.submit(_pid_and_sum, 4, 5).result()
    assert total == 5 and again[1] == 9
    assert (pid != os.getpid()) == parallel.enabled() == (task.where == "worker")
    assert again[0] == pid  # one worker process serves its tasks in turn
    assert task.result() == (pid, 5)  # cached
    assert task.seconds >= 0.0 and task.cpu_seconds >= 0.0


def test_task_errors_propagate_and_dead_workers_are_reported() -> None:
    with pytest.raises(ValueError, match="bad input"):  # the function's own error, re-raised
        parallel.run_in_worker("figure", _fails).result()
    warnings: list[str] = []
    task = parallel.run_in_worker("3-D views", _die_unless, os.getpid())
    assert task.result(warnings=warnings) == 7  # run here after the worker died
    if parallel.enabled():
        assert task.where == "here"
        assert len(warnings) == 1 and warnings[0].startswith("3-D views: worker process failed")
    else:
        assert warnings == []


def test_serial_mode_runs_here(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(parallel.SERIAL_ENV, "1")
    w = parallel.Worker("serial")
    assert not w.active
    task = w.submit(_pid_and_sum, 1, 1)
    assert task.result() == (os.getpid(), 2) and task.where == "here"
    w.close()
    assert not parallel.Worker("off", start=False, warm=_sleep_forever).active


@pytest.mark.skipif(not parallel.enabled(), reason="worker processes disabled here")
def test_warm_up_runs_in_the_worker_before_its_tasks(tmp_path: os.PathLike[str]) -> None:
    marker = os.path.join(str(tmp_path), "warm")
    import functools

    with parallel.Worker("warm", warm=functools.partial(_write_pid, marker)) as w:
        pid, _ = w.submit(_pid_and_sum, 0, 0).result()
    with open(marker) as fh:
        assert int(fh.read()) == pid


@pytest.mark.skipif(not parallel.enabled(), reason="worker processes disabled here")
def test_idle_worker_stops_at_once_and_reset_abandons_tasks() -> None:
    w = parallel.Worker("idle", warm=_sleep_forever)
    t0 = time.perf_counter()
    w.close()
    assert time.perf_counter() - t0 < 5.0
    w = parallel.Worker("busy")
    w.submit(_sleep_forever)
    t0 = time.perf_counter()
    w.reset()  # the sleeping task is abandoned; the fresh worker takes new tasks
    assert w.submit(_pid_and_sum, 1, 2).result(timeout_s=30)[1] == 3
    w.close()
    assert time.perf_counter() - t0 < 20.0


def test_in_thread() -> None:
    task = parallel.in_thread("load", _pid_and_sum, 3, 4)
    assert task.result() == (os.getpid(), 7) and task.where == "thread"
    with pytest.raises(ValueError):
        parallel.in_thread("load", _fails).result()
