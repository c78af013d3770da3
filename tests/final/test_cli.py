"""``llmnas train``, ``export-model``, ``report``, ``top --pareto/--json`` and ``show --json`` on a store: bad input is
one line and exit 2; the JSON is what scripts read."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from llmnas_local.cli.main import cli


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def one_line_error(r, message: str) -> None:
    assert r.exit_code == 2, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0], r.output


def test_bad_input(digits_store, tmp_path):
    path, h = digits_store
    one_line_error(run("train", path, "ffff"), "no architecture with hash 'ffff'")
    one_line_error(run("train", path), "give either ARCH")
    one_line_error(run("train", path, h["small"], "--best"), "not both")
    one_line_error(run("train", path, h["rejected"][:12]), "has no completed evaluation")
    one_line_error(run("train", path, "--best", "--run", "nope"), "no run 'nope'")
    one_line_error(run("train", tmp_path / "none", "--best"), "no store at")
    one_line_error(run("train", path, "--best", "-q", "--data", tmp_path / "missing.npz"), "not found")
    one_line_error(run("export-model", path, "--best", "--format", "onnx", "--out", tmp_path / "x"),
                   "no final training")
    one_line_error(run("show", path, "ffff"), "no architecture with hash 'ffff'")
    one_line_error(run("report", path, "--run", "nope", "--out", tmp_path / "r"), "no run 'nope'")
    assert not (tmp_path / "none").exists()              # a missing store is not created


def test_top_and_show_json(digits_store):
    path, h = digits_store
    top = json.loads(run("top", path, "--json").output)
    assert [r["arch_hash"] for r in top["rows"]] == [h["small"], h["other"]]
    assert top["counts"]["complete"] == 2 and top["counts"]["invalid"] == 1 and top["rows"][0]["finals"] == []
    front = json.loads(run("top", path, "--pareto", "--json").output)
    assert [r["arch_hash"] for r in front["rows"]] == [h["small"], h["other"]]    # smaller, less accurate: both
    text = run("top", path, "--pareto").output
    assert "Pareto front" in text and h["small"][:12] in text
    shown = json.loads(run("show", path, h["small"][:10], "--json").output)
    assert shown["arch_hash"] == h["small"] and shown["trials"][0]["status"] == "complete" and shown["finals"] == []


@pytest.mark.slow
def test_train_then_top_show_export_report(digits_store, tmp_path):
    path, h = digits_store
    r = run("train", path, "--best", "--epochs", 2, "--batch-size", 32)
    assert r.exit_code == 0, r.output
    assert "final: val_acc" in r.output
    top = json.loads(run("top", path, "--json").output)
    [final] = top["rows"][0]["finals"]
    assert final["epochs"] == 2 and final["metrics"]["test_acc"] > 0
    assert "final training: 2 epochs" in run("top", path).output
    show = run("show", path, h["small"][:8]).output
    assert "final training (recipe" in show and "weights.safetensors" in show
    assert json.loads(run("show", path, h["small"], "--json").output)["finals"][0]["best_epoch"] >= 1
    exported = run("export-model", path, "--best", "--format", "torchscript", "--out", tmp_path / "m")
    assert exported.exit_code == 0 and (tmp_path / "m" / "model.torchscript.pt").is_file()
    report = run("report", path, "--out", tmp_path / "r")
    assert report.exit_code == 0 and (tmp_path / "r" / "index.html").is_file()


def test_divergence_is_one_line_and_exit_1(digits_store):
    path, _ = digits_store
    r = run("train", path, "--best", "--epochs", 1, "--lr", 1e12, "-q")
    assert r.exit_code == 1 and r.output.strip() == ("Error: diverged: the training loss is nan in epoch 1; no epoch "
                                                     "completed; try a lower --lr"), r.output
