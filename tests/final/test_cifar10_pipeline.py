"""The path a lab takes, on the real CIFAR-10 JPEGs: a search, ``llmnas train --best`` on its store (a few epochs on a
part of the training split, to fit CI), the export loaded back by onnxruntime, and ``top`` showing the result."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from llmnas_local.cli.main import cli

pytestmark = pytest.mark.slow


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_cifar10_search_then_train_best_then_export(cifar10_tar, tmp_path, monkeypatch):
    monkeypatch.setenv("LLMNAS_CACHE_DIR", str(tmp_path / "cache"))
    store = tmp_path / "store"
    r = run("search", "--space", "cnn", "--data", cifar10_tar, "--proposer", "random", "--budget", 2,
            "--train-size", 800, "--val-size", 500, "--test-size", 500, "--store", store, "-q")
    assert r.exit_code == 0, r.output
    assert "complete 2" in r.output, r.output

    r = run("train", store, "--best", "--epochs", 2, "--train-size", 2000, "--batch-size", 64)
    assert r.exit_code == 0, r.output
    assert "2000 training" in r.output and "final: val_acc" in r.output, r.output
    [row] = [row for row in json.loads(run("top", store, "--json").output)["rows"] if row["finals"]]
    final = row["finals"][0]
    assert final["epochs"] == 2 and 10.0 < final["metrics"]["test_acc"] <= 100.0      # ten classes: chance is 10

    onnx = pytest.importorskip("onnxruntime")
    r = run("export-model", store, "--best", "--format", "onnx", "--out", tmp_path / "model")
    assert r.exit_code == 0, r.output
    [model_file] = (tmp_path / "model").glob("*.onnx")
    session = onnx.InferenceSession(str(model_file), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape[1:] == [3, 32, 32]
