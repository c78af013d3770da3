"""Trials in the isolated worker: results, determinism, and every way a trial can go wrong, parent unharmed.

One evaluator serves the whole module, in file order, to keep the waits for worker start-ups (the cost of importing
torch) to two: the first trial, and the two workers, started side by side, after the SIGKILL.
"""
from __future__ import annotations

import os

import pytest

from llmnas_local.evaluators.data import DataSpec
from llmnas_local.evaluators.training import TrainingConfig, TrainingEvaluator
from llmnas_local.evaluators.worker import WORKER_START_S, TrialWorker
from llmnas_local.records import (BUILD_S, EVAL_S, FLOPS_M, PARAMS_M, PEAK_MEM_MB, TEST_ACC, TRAIN_LOSS, TRAIN_S,
                                  VAL_ACC, TrialStatus)
from tests.evaluators.tiny_space import TinySpace

pytestmark = pytest.mark.slow          # every test runs trials in worker processes

SPACE = TinySpace()
FIRST: dict = {}
DEVICE = os.environ.get("LLMNAS_TEST_DEVICE", "cpu")      # "cuda" on a GPU machine: the same checks there


@pytest.fixture(scope="module")
def ev(tmp_path_factory):
    spec = DataSpec("digits", train_size=256, val_size=128, test_size=128,
                    cache_dir=str(tmp_path_factory.mktemp("cache")))
    evaluator = TrainingEvaluator(spec, TrainingConfig(device=DEVICE), time_limit_s=120, threads=1)
    yield evaluator
    pids = evaluator.worker_pids()
    evaluator.close()
    assert pids and not any(_alive(pid) for pid in pids)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:      # a zombie is dead
        return f.read().split(")")[-1].split()[0] != "Z"


def run(ev, text: str):
    spec = SPACE.parse(text)
    return ev.evaluate(SPACE, spec)


def test_complete_and_deterministic(ev):
    a = run(ev, "tiny_c8_ok")
    assert a.status is TrialStatus.COMPLETE, a.error
    assert {VAL_ACC, TEST_ACC, PARAMS_M, FLOPS_M, TRAIN_S, PEAK_MEM_MB, TRAIN_LOSS} <= set(a.metrics)
    assert 0 <= a.metrics[VAL_ACC] <= 100 and a.metrics[PEAK_MEM_MB] > 0 and WORKER_START_S in a.timings
    assert {BUILD_S, EVAL_S} <= set(a.timings)
    assert a.metrics[PARAMS_M] == pytest.approx(ev.precheck(SPACE, SPACE.parse("tiny_c8_ok"))[PARAMS_M])
    b = run(ev, "tiny_c8_ok")
    assert WORKER_START_S not in b.timings                         # the same worker, still warm
    for k in (VAL_ACC, TEST_ACC, TRAIN_LOSS):
        assert a.metrics[k] == b.metrics[k], k
    FIRST.update(a.metrics, pid=ev.worker_pids()[0])


def test_real_cnn_space(ev):
    from llmnas_local.dsl import get_space

    space = get_space("cnn")
    spec = space.parse(space.examples()[0])
    ev.precheck(space, spec)
    out = ev.evaluate(space, spec)
    assert out.status is TrialStatus.COMPLETE, out.error
    assert out.metrics[PARAMS_M] > 0


def test_exception_is_failed_with_one_line(ev):
    out = run(ev, "tiny_c8_raise")
    assert out.status is TrialStatus.FAILED and out.error == "RuntimeError: boom in forward"
    assert out.metrics[PARAMS_M] > 0                               # profiled before training
    if DEVICE == "cpu":
        assert ev.worker_pids()[0] == FIRST["pid"]                 # a Python exception costs no restart on CPU


def test_nan_loss_is_diverged(ev):
    out = run(ev, "tiny_c8_nan")
    assert out.status is TrialStatus.FAILED and out.error == "diverged: loss is nan at step 1"


def test_sigkill_is_failed(ev):
    out = run(ev, "tiny_c8_kill")
    assert out.status is TrialStatus.FAILED and out.error == "killed by signal 9 (out of memory?)"
    assert not _alive(FIRST["pid"])


def test_fresh_and_concurrent_workers_give_the_same_numbers(ev):
    """Two evaluations at once: one takes the worker started after the kill, the other starts a second one."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as pool:
        outs = list(pool.map(lambda _: run(ev, "tiny_c8_ok"), range(2)))
    pids = ev.worker_pids()
    assert len(pids) == 2 and FIRST["pid"] not in pids
    for o in outs:
        assert o.status is TrialStatus.COMPLETE
        assert (o.metrics[VAL_ACC], o.metrics[TRAIN_LOSS]) == (FIRST[VAL_ACC], FIRST[TRAIN_LOSS])


def test_timeout_kills_the_process_group(ev):
    pids = set(ev.worker_pids())
    ev.time_limit_s = 2.0
    try:
        out = run(ev, "tiny_c8_sleep")
    finally:
        ev.time_limit_s = 120
    assert out.status is TrialStatus.TIMEOUT and out.error == "exceeded the time limit of 2 s"
    assert out.metrics[PARAMS_M] > 0 and 2.0 <= out.timings[EVAL_S] < 10
    assert len(pids - set(ev.worker_pids())) == 1 and not any(_alive(p) for p in pids - set(ev.worker_pids()))


def test_a_worker_that_cannot_start_raises(tmp_path):
    """A broken data set is not a bad architecture: the evaluator raises (the data is checked before torch loads)."""
    import numpy as np

    np.savez(tmp_path / "d.npz", x_train=np.zeros((8, 4, 4), np.uint8), y_train=np.arange(8) % 2,
             x_test=np.zeros((2, 4, 4), np.uint8), y_test=np.arange(2))
    init = {"data": DataSpec(str(tmp_path / "d.npz")).to_json(), "fingerprint": "0" * 64,
            "config": TrainingConfig(device="cpu").to_json(), "constraints": {}, "threads": 1}
    worker = TrialWorker(init, startup_timeout_s=60)
    with pytest.raises(RuntimeError, match="training worker failed to start: RuntimeError: the data set changed"):
        worker.start()
    assert worker.pid is None
