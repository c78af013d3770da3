"""llmnas_local.gpu: the readings' parsing, the guards on a machine without a GPU, and the --workers auto rule."""
from __future__ import annotations

import pytest

from llmnas_local import gpu
from llmnas_local.gpu import (CUDA_CONTEXT_MB, GPU_MEM_USED_MB, GPU_UTIL_PCT, GpuSampler, GpuStats, choose_workers,
                              parse_smi_line, physical_index)


def test_parse_smi_line():
    s = parse_smi_line("75, 40960, 143771, 9.0\n")
    assert s == GpuStats(75.0, 40960.0, 143771.0, 9.0) and s.mem_free_mb == 143771 - 40960
    assert parse_smi_line("3, 100, 1000\n").compute_capability is None
    assert parse_smi_line("3, 100, 1000, [N/A]").compute_capability is None
    assert parse_smi_line("") is None and parse_smi_line("[N/A], 1, 2") is None


def test_physical_index_follows_cuda_visible_devices(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert physical_index("cuda") == 0 and physical_index("cuda:2") == 2
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    assert physical_index("cuda") == 3 and physical_index("cuda:1") == 5


def test_cpu_reads_nothing():
    assert gpu.query_gpu("cpu") is None and gpu.describe(None) == ""
    with GpuSampler("cpu", interval_s=0.01) as s:
        pass
    assert s.summary() == {} and s.latest is None


def test_sampler_summary(monkeypatch):
    readings = iter([GpuStats(50, 1000, 8000), GpuStats(100, 3000, 8000)])
    monkeypatch.setattr(gpu, "query_gpu", lambda device: next(readings, None))
    with GpuSampler("cuda", interval_s=0.001) as s:
        s._thread.join(timeout=5)            # the fake runs out after two readings: the thread ends
    assert s.summary() == {GPU_UTIL_PCT: 75.0, GPU_MEM_USED_MB: 3000}
    assert gpu.describe(s.latest) == "gpu 100% 2.9/7.8 GiB"


def test_bf16_by_compute_capability(monkeypatch):
    for cc, want in ((9.0, True), (8.0, True), (7.5, False), (None, True)):
        monkeypatch.setattr(gpu, "query_gpu", lambda device, cc=cc: GpuStats(0, 0, 1, cc))
        assert gpu.bf16_supported("cuda") is want
    monkeypatch.setattr(gpu, "query_gpu", lambda device: None)
    assert gpu.bf16_supported("cuda")


def test_workers_on_a_gpu_from_free_memory_and_measured_peaks():
    # 140 GiB H200, 20 GiB taken by the LLM: 120 GiB free, 14 GiB reserved; peak 6000 MiB -> 8500 MiB per training
    n, why = choose_workers(on_gpu=True, cores=16, free_mb=120 * 1024, total_mb=140 * 1024, peaks_mb=[3000, 6000])
    assert n == min(8, (120 * 1024 - 14 * 1024) // (6000 * 1.25 + CUDA_CONTEXT_MB)) == 8
    assert "GPU" in why and "6,000 MiB measured peak of 2 trials" in why
    n, _ = choose_workers(on_gpu=True, cores=16, free_mb=24 * 1024, total_mb=24 * 1024, peaks_mb=[6000])
    assert n == int((24 * 1024 * 0.9) // 8524)  # 2
    n, _ = choose_workers(on_gpu=True, cores=16, free_mb=4000, total_mb=24 * 1024, peaks_mb=[6000])
    assert n == 1                                 # never fewer than one
    n, _ = choose_workers(on_gpu=True, cores=4, free_mb=1e6, total_mb=1e6, peaks_mb=[100], llm_in_process=True)
    assert n == 3                                 # one per core, one core for the LLM
    n, why = choose_workers(on_gpu=True, cores=16, free_mb=20000, total_mb=20000, data_mb=600)
    assert n == (20000 - 2000) // (600 + 2048 + CUDA_CONTEXT_MB) == 4 and "no peak measured yet" in why
    n, _ = choose_workers(on_gpu=True, cores=16, free_mb=None, peaks_mb=[100])
    assert n == 8                                 # memory unknown: the cap


def test_workers_on_the_cpu_from_cores_and_ram():
    assert choose_workers(on_gpu=False, cores=2, free_mb=20000, llm_in_process=True)[0] == 1
    assert choose_workers(on_gpu=False, cores=2, free_mb=20000)[0] == 1
    assert choose_workers(on_gpu=False, cores=16, free_mb=1e6, llm_in_process=True)[0] == 7
    assert choose_workers(on_gpu=False, cores=16, free_mb=1e6)[0] == 8
    n, why = choose_workers(on_gpu=False, cores=16, free_mb=3000, peaks_mb=[800])
    assert n == 3 and "CPU" in why                # 3000 / (800 x 1.25)


def test_auto_workers_of_a_table_is_one():
    class Table:
        constraints = None
    assert gpu.auto_workers(Table())[0] == 1


def test_measured_peaks_are_the_recipes_own():
    from llmnas_local.records import PEAK_MEM_MB, RunRecord, TrialRecord, TrialStatus
    from llmnas_local.store import MemoryStore

    store = MemoryStore()
    for run_id, rh, peak in (("a", "r1", 500.0), ("b", "r2", 9000.0)):
        store.put_run(RunRecord(run_id=run_id, space="cnn", proposer="random", proposer_settings={},
                                evaluator="training", recipe={}, recipe_hash=rh, seed=0))
        store.record_trial(TrialRecord(run_id=run_id, seq=0, proposer="random", raw="x", status=TrialStatus.COMPLETE,
                                       canonical="x", arch_hash="h" + run_id, recipe_hash=rh,
                                       metrics={PEAK_MEM_MB: peak}))
    assert gpu.measured_peaks(store, "r1") == [500.0]
    assert gpu.measured_peaks(store, "r3") == []


@pytest.mark.parametrize("device", ["cpu"])
def test_auto_workers_for_a_training_evaluator_on_the_cpu(device, tmp_path):
    from llmnas_local.evaluators import TrainingConfig, TrainingEvaluator
    from llmnas_local.evaluators.data import DataSpec

    ev = TrainingEvaluator(DataSpec("digits", train_size=64, val_size=32, test_size=32, cache_dir=str(tmp_path)),
                           TrainingConfig(device=device))
    n, why = gpu.auto_workers(ev, [], llm_in_process=True, cores=2)
    assert n == 1 and why.startswith("--workers auto: 1 on the CPU")
    ev.close()
