"""The proxy training in-process (no worker): it learns, it detects divergence, its recipe names what matters."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from llmnas_local.dsl.base import Constraints, SemanticError
from llmnas_local.evaluators.data import DataSpec, load_dataset
from llmnas_local.evaluators.training import (Diverged, TrainingConfig, TrainingEvaluator, lr_at, prepare_tensors,
                                              train_and_score)
from llmnas_local.records import FLOPS_M, PARAMS_M, TEST_ACC, TRAIN_LOSS, TRAIN_S, VAL_ACC
from tests.evaluators.tiny_space import TinySpace


@pytest.fixture(scope="module")
def digits16(tmp_path_factory):
    torch.set_num_threads(1)
    ds = load_dataset("digits", resolution=16, cache_dir=str(tmp_path_factory.mktemp("cache")))
    return ds, prepare_tensors(ds, "cpu")


def fresh(width: int = 16, fault: str = "ok", in_chans: int = 1):
    torch.manual_seed(0)
    space = TinySpace()
    return space.build(space.parse(f"tiny_c{width}_{fault}"), num_classes=10, in_chans=in_chans, input_size=16)


def test_learns_digits(digits16):
    _, data = digits16
    m = train_and_score(fresh(), data, TrainingConfig(epochs=3, lr=0.2, batch_size=32), "cpu")
    assert set(m) == {TRAIN_S, TRAIN_LOSS, VAL_ACC, TEST_ACC}
    assert m[VAL_ACC] > 70 and m[TEST_ACC] > 70 and m[TRAIN_LOSS] < 1.0


def test_normalisation_is_train_split_statistics(digits16):
    ds, data = digits16
    assert abs(float(data.x_train.mean())) < 1e-4 and abs(float(data.x_train.std()) - 1) < 1e-3
    assert data.x_train.shape == (len(ds.y_train), 1, 16, 16) and data.x_train.dtype == torch.float32


def test_huge_lr_diverges(digits16):
    _, data = digits16
    with pytest.raises(Diverged, match=r"^diverged: loss is (nan|inf|-inf) at step \d+$"):
        train_and_score(fresh(), data, TrainingConfig(lr=1e6, batch_size=32), "cpu")


def test_cosine_schedule_per_step():
    c = TrainingConfig(lr=0.1)
    assert lr_at(c, 0, 10) == pytest.approx(0.1) and lr_at(c, 5, 10) == pytest.approx(0.05)
    assert lr_at(c, 9, 10) < 0.003 and lr_at(dataclasses.replace(c, schedule="constant"), 9, 10) == 0.1


def test_flip_augmentation_runs_and_changes_the_result(digits16):
    _, data = digits16
    base = TrainingConfig(epochs=1, batch_size=64)
    a = train_and_score(fresh(), data, base, "cpu")
    b = train_and_score(fresh(), data, dataclasses.replace(base, augment="flip"), "cpu")
    assert a[TRAIN_LOSS] != b[TRAIN_LOSS]


def test_config_validation():
    with pytest.raises(ValueError, match="augment"):
        TrainingConfig(augment="cutout")
    with pytest.raises(ValueError, match="device"):
        TrainingConfig(device="tpu")


@pytest.fixture(scope="module")
def evaluator(tmp_path_factory):
    spec = DataSpec("digits", train_size=64, val_size=32, test_size=32,
                    cache_dir=str(tmp_path_factory.mktemp("cache")))
    ev = TrainingEvaluator(spec, TrainingConfig(device="cpu"))
    yield ev
    ev.close()


def test_recipe_names_everything_that_changes_a_result(evaluator):
    r = evaluator.recipe()
    assert r["epochs"] == 1 and r["batch_size"] == 128 and r["schedule"] == "cosine_per_step"
    assert r["optimizer"] == {"name": "sgd", "lr": 0.01, "momentum": 0.9, "weight_decay": 5e-4, "nesterov": False,
                              "weight_decay_on": "all"}
    assert r["device"] == "cpu" and r["dtype"] == "float32" and r["augment"] == "none" and r["seed"] == 0
    assert r["data"]["num_train"] == 64 and r["data"]["input_size"] == 32 and len(r["data"]["fingerprint"]) == 64
    assert "name" not in r["data"] and "cache_dir" not in str(r)      # content, not names or places
    h = evaluator.recipe_hash()
    spec = evaluator.data_spec
    for change in ({"seed": 1}, {"lr": 0.02}, {"augment": "flip"}, {"epochs": 2}, {"nesterov": True}):
        other = TrainingEvaluator(spec, dataclasses.replace(evaluator.config, **change))
        assert other.recipe_hash() != h, change
    for change in ({"split_seed": 1}, {"train_size": 32}, {"resolution": 16}, {"val_fraction": 0.2}):
        other = TrainingEvaluator(dataclasses.replace(spec, **change), evaluator.config)
        assert other.recipe_hash() != h, change
    same = TrainingEvaluator(spec, evaluator.config, time_limit_s=5, threads=1, max_trials_per_worker=3)
    assert same.recipe_hash() == h


def test_constraints_default_to_and_must_match_the_data(evaluator):
    assert evaluator.constraints == Constraints(num_classes=10, in_chans=1, input_size=32)
    assert evaluator.describe_task().startswith("classify 1x32x32 images (digits) into 10 classes")
    with pytest.raises(ValueError, match="do not match"):
        TrainingEvaluator(evaluator.data_spec, constraints=Constraints(num_classes=10, in_chans=3, input_size=32))


def test_precheck(evaluator):
    space = TinySpace()
    m = evaluator.precheck(space, space.parse("tiny_c8_ok"))
    assert set(m) == {PARAMS_M, FLOPS_M} and 0 < m[PARAMS_M] < 0.01 and m[FLOPS_M] > 0
    with pytest.raises(SemanticError, match="width"):
        evaluator.precheck(space, space.parse("tiny_c512_ok"))
    capped = TrainingEvaluator(evaluator.data_spec, max_params_m=0.001)
    assert capped.constraints.max_params_m == 0.001 and capped.constraints.in_chans == 1
    with pytest.raises(SemanticError, match="exceed the cap"):
        capped.precheck(space, space.parse("tiny_c8_ok"))
    with pytest.raises(ValueError, match="not both"):
        TrainingEvaluator(evaluator.data_spec, constraints=capped.constraints, max_flops_m=1.0)
