"""Mixed precision in the recipe: ``auto`` resolves before hashing (float32 and contiguous on the CPU, bfloat16
autocast and channels-last on a GPU), every concrete setting has its own recipe hash, and bfloat16 autocast with
channels-last trains on the CPU when asked for explicitly. The accuracy comparison fp32 vs bf16 needs a GPU:
benchmarks/gpu_check.py makes it."""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from llmnas_local import gpu
from llmnas_local.evaluators.data import DataSpec, load_dataset
from llmnas_local.evaluators.training import TrainingConfig, TrainingEvaluator, prepare_tensors, train_and_score
from llmnas_local.records import TRAIN_LOSS, VAL_ACC
from tests.evaluators.test_training import fresh


def test_auto_resolves_per_device(monkeypatch):
    c = TrainingConfig()
    assert (c.dtype, c.memory_format) == ("auto", "auto")
    cpu = c.resolved("cpu")
    assert (cpu.device, cpu.dtype, cpu.memory_format) == ("cpu", "float32", "contiguous")
    monkeypatch.setattr(gpu, "query_gpu", lambda device: gpu.GpuStats(0, 0, 1, 9.0))
    h200 = c.resolved("cuda:0")
    assert (h200.device, h200.dtype, h200.memory_format) == ("cuda:0", "bfloat16", "channels_last")
    monkeypatch.setattr(gpu, "query_gpu", lambda device: gpu.GpuStats(0, 0, 1, 7.5))
    assert c.resolved("cuda").dtype == "float32"          # a T4 has no bfloat16 units
    fixed = dataclasses.replace(c, dtype="float32", memory_format="contiguous").resolved("cuda")
    assert (fixed.dtype, fixed.memory_format) == ("float32", "contiguous")
    with pytest.raises(ValueError, match="memory_format"):
        TrainingConfig(memory_format="nhwc")
    with pytest.raises(ValueError, match="dtype"):
        TrainingConfig(dtype="float16")


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    return DataSpec("digits", train_size=64, val_size=32, test_size=32, cache_dir=str(tmp_path_factory.mktemp("c")))


def test_recipe_hash_names_the_precision_used(spec, monkeypatch):
    def recipe(**change):
        ev = TrainingEvaluator(spec, TrainingConfig(**change))
        return ev.recipe(), ev.recipe_hash()

    auto_cpu, h = recipe(device="cpu")
    assert auto_cpu["dtype"] == "float32" and "memory_format" not in auto_cpu   # as before the setting existed
    assert recipe(device="cpu", dtype="float32", memory_format="contiguous")[1] == h
    bf16, h_bf16 = recipe(device="cpu", dtype="bfloat16")
    cl, h_cl = recipe(device="cpu", memory_format="channels_last")
    assert bf16["dtype"] == "bfloat16" and cl["memory_format"] == "channels_last"
    assert len({h, h_bf16, h_cl}) == 3
    # The same settings on a GPU (no worker starts here): resolved to bfloat16 and channels-last, another hash.
    monkeypatch.setattr(gpu, "query_gpu", lambda device: gpu.GpuStats(0, 0, 1, 9.0))
    on_gpu, h_gpu = recipe(device="cuda")
    assert (on_gpu["device"], on_gpu["dtype"], on_gpu["memory_format"]) == ("cuda", "bfloat16", "channels_last")
    assert h_gpu not in (h, h_bf16, h_cl)
    assert recipe(device="cuda", dtype="bfloat16", memory_format="channels_last")[1] == h_gpu


def test_bf16_autocast_and_channels_last_train_on_the_cpu(tmp_path):
    torch.set_num_threads(1)
    ds = load_dataset("digits", resolution=16, cache_dir=str(tmp_path))
    data = prepare_tensors(ds, "cpu")
    base = TrainingConfig(epochs=2, lr=0.2, batch_size=32, device="cpu")
    fp32 = train_and_score(fresh(), data, base, "cpu")
    bf16 = train_and_score(fresh(), data, dataclasses.replace(base, dtype="bfloat16", memory_format="channels_last"),
                           "cpu")
    assert math.isfinite(bf16[TRAIN_LOSS]) and bf16[VAL_ACC] > 60 and fp32[VAL_ACC] > 60
    assert bf16[TRAIN_LOSS] != fp32[TRAIN_LOSS]                     # autocast was on
