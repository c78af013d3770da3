"""``llmnas search --workers auto``: the choice is made, printed and used; bad values are one line, exit 2."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from llmnas_local.cli.main import cli


@pytest.mark.parametrize("value", ["0", "lots", "-2"])
def test_bad_workers_is_one_line_and_exit_2(tmp_path, value):
    r = CliRunner().invoke(cli, ["search", "--proposer", "random", "--workers", value, "--store", str(tmp_path / "s"),
                                 "-q"])
    assert r.exit_code == 2 and "'--workers'" in r.output and "Traceback" not in r.output, r.output


@pytest.mark.slow
def test_workers_auto_on_the_cpu(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMNAS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    r = CliRunner().invoke(cli, ["search", "--proposer", "random", "--budget", "2", "--workers", "AUTO",
                                 "--train-size", "64", "--val-size", "32", "--test-size", "32", "--epochs", "1",
                                 "--store", str(tmp_path / "s")], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert "--workers auto: 1 on the CPU" in r.output and "2 cores, 2 per training" in r.output
    assert "2 evaluations" in r.output


def test_progress_bar_shows_the_gpu(monkeypatch):
    import types

    from llmnas_local import gpu
    from llmnas_local.cli.search_cmd import _Progress

    monkeypatch.setattr(gpu, "query_gpu", lambda device: gpu.GpuStats(80, 40 * 1024, 140 * 1024))
    study = types.SimpleNamespace(num_evaluated=0, evaluator=types.SimpleNamespace(device="cuda"),
                                  best=lambda: None, counts=lambda: {"invalid": 0, "duplicate": 0, "failed": 0,
                                                                     "timeout": 0})
    progress = _Progress(study, 10, disable=False)
    progress.gpu._thread.join(timeout=0.2)       # one reading is enough; the thread keeps reading every 2 s
    progress.update(study, None)
    assert progress.bar.postfix == "best val - gpu 80% 40.0/140.0 GiB"
    progress.close()
    cpu = _Progress(types.SimpleNamespace(**{**vars(study), "evaluator": object()}), 10, disable=False)
    cpu.update(study, None)
    assert cpu.bar.postfix == "best val -" and cpu.gpu.latest is None
    cpu.close()
