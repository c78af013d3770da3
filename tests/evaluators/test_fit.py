"""fit_proxy: the caps and proxy settings a search takes from the machine and the data's size, and how
create_evaluator applies them (each explicit setting wins; the fitted values are in the recipe)."""
from __future__ import annotations

import numpy as np
import pytest

from llmnas_local.evaluators import create_evaluator
from llmnas_local.evaluators.fit import CPU_EVAL_IMAGES, Machine, fit_proxy
from llmnas_local.evaluators.proxy import DIGITS_PROXY, METHOD_PROXY

CIFAR = {"num_train": 45_000, "num_val": 5_000, "num_test": 10_000, "input_size": 32}
CPU2 = Machine("cpu", 2)


def test_a_two_core_cpu_trains_a_subset_under_caps():
    s = fit_proxy("cifar10_jpg.tar.gz", CPU2, **CIFAR).settings
    assert s == {"resolution": None, "train_size": 3200, "val_size": CPU_EVAL_IMAGES, "test_size": CPU_EVAL_IMAGES,
                 "epochs": 1, "batch_size": 32, "lr": 0.05, "max_params_m": 1.0, "max_flops_m": 25.0}


def test_more_cores_train_more_images_and_a_small_set_trains_longer():
    assert fit_proxy("x", Machine("cpu", 4), **CIFAR).settings["train_size"] == 6400
    small = fit_proxy("x", CPU2, num_train=1000, num_val=100, num_test=500, input_size=28).settings
    assert (small["train_size"], small["epochs"], small["val_size"], small["test_size"]) == (None, 3, None, None)
    assert fit_proxy("x", CPU2, num_train=2000, num_val=100, num_test=500, input_size=28).settings["epochs"] == 1


def test_large_images_are_scaled_down_on_a_cpu_only():
    big = {**CIFAR, "input_size": 224}
    assert fit_proxy("x", CPU2, **big).settings["resolution"] == 32
    assert fit_proxy("x", Machine("cuda", 16), **big).settings["resolution"] is None


def test_a_gpu_gets_the_methods_full_proxy_without_caps():
    fit = fit_proxy("x", Machine("cuda", 16), **CIFAR)
    assert {k: fit.settings[k] for k in METHOD_PROXY} == METHOD_PROXY
    assert all(fit.settings[k] is None for k in ("train_size", "val_size", "test_size", "max_params_m",
                                                  "max_flops_m"))
    assert "method's proxy" in fit.reason


def test_digits_keeps_its_measured_defaults_on_any_device():
    for machine in (CPU2, Machine("cuda", 8)):
        s = fit_proxy("digits", machine, num_train=0, num_val=0, num_test=0, input_size=0).settings
        assert {k: s[k] for k in ("epochs", "batch_size", "lr", "resolution", "max_params_m", "max_flops_m")} == \
            {k: DIGITS_PROXY[k] for k in ("epochs", "batch_size", "lr", "resolution", "max_params_m", "max_flops_m")}


def test_describe_says_what_and_why_in_two_lines_and_marks_what_was_given():
    fit = fit_proxy("x", CPU2, **CIFAR)
    text = fit.describe({"epochs": 2, "max_flops_m": None})
    assert len(text.splitlines()) == 2
    assert "3,200 training images x 2 (given) epoch(s)" in text and "25M FLOPs" in text and "2 CPU cores" in text


@pytest.fixture
def npz(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "set.npz"
    np.savez(path, x_train=rng.integers(0, 255, (4000, 40, 40, 3), dtype=np.uint8),
             y_train=np.arange(4000) % 10, x_test=rng.integers(0, 255, (2500, 40, 40, 3), dtype=np.uint8),
             y_test=np.arange(2500) % 10)
    return str(path)


def test_create_evaluator_applies_the_fit_and_every_given_setting_wins(npz):
    said = []
    ev = create_evaluator("cnn", data=npz, recipe={"device": "cpu"}, machine=CPU2, on_fit=said.append)
    try:
        d, c = ev.recipe()["data"], ev.config
        assert (d["num_train"], d["num_val"], d["num_test"], d["input_size"]) == (3200, 400, 2000, 32)
        assert (c.epochs, c.batch_size, c.lr) == (1, 32, 0.05)
        assert (ev.constraints.max_params_m, ev.constraints.max_flops_m) == (1.0, 25.0)
        assert len(said) == 1 and "why:" in said[0]
    finally:
        ev.close()
    given = create_evaluator("cnn", data={"source": npz, "train_size": 500, "resolution": 16},
                             recipe={"device": "cpu", "lr": 0.1}, machine=CPU2, max_params_m=2.0)
    try:
        d, c = given.recipe()["data"], given.config
        assert (d["num_train"], d["input_size"], c.lr, c.epochs) == (500, 16, 0.1, 3)   # 500 images: 3 epochs
        assert (given.constraints.max_params_m, given.constraints.max_flops_m) == (2.0, 25.0)
        assert given.recipe_hash() != ev.recipe_hash()
    finally:
        given.close()


def test_the_same_command_on_the_same_machine_gets_the_same_recipe(npz):
    hashes = []
    for _ in range(2):
        ev = create_evaluator("cnn", data=npz, recipe={"device": "cpu"}, machine=Machine.detect("cpu"))
        hashes.append(ev.recipe_hash())
        ev.close()
    assert hashes[0] == hashes[1]
