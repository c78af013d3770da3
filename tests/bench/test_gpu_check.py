"""benchmarks/gpu_check.py on the CPU with tiny budgets (``--tiny``), as CI runs it: every section runs, none fails,
the summary block has a line per figure, and nothing reaches the network. The GPU figures need a GPU machine."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import zipfile

import pytest

from tests import netguard
from tests.conftest import REPO

SCRIPT = REPO / "benchmarks" / "gpu_check.py"


def load_script(monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))
    spec = importlib.util.spec_from_file_location("gpu_check_under_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bundle_wheels_are_installed_once_offline_and_put_on_the_path(tmp_path, monkeypatch):
    gpu_check = load_script(monkeypatch)
    monkeypatch.setenv("PYTHONPATH", "")
    (tmp_path / "wheels").mkdir()
    with zipfile.ZipFile(tmp_path / "wheels" / "tinypkg-0.1-py3-none-any.whl", "w") as z:
        info = "tinypkg-0.1.dist-info"
        z.writestr("tinypkg/__init__.py", "VALUE = 42\n")
        z.writestr(f"{info}/METADATA", "Metadata-Version: 2.1\nName: tinypkg\nVersion: 0.1\n")
        z.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr(f"{info}/RECORD", "".join(f"{f},,\n" for f in ("tinypkg/__init__.py", f"{info}/METADATA",
                                                                  f"{info}/WHEEL", f"{info}/RECORD")))
    assert gpu_check.use_bundle(tmp_path) == tmp_path / "model"
    site = tmp_path / "site"
    assert (site / "tinypkg" / "__init__.py").exists() and sys.path[0] == str(site)
    assert os.environ["PYTHONPATH"] == str(site)          # training workers find the packages too
    (site / "tinypkg" / "__init__.py").write_text("VALUE = 43\n")
    gpu_check.use_bundle(tmp_path)                        # installed once: not again
    assert (site / "tinypkg" / "__init__.py").read_text() == "VALUE = 43\n"


def test_model_files_are_required(tmp_path):
    r = subprocess.run([sys.executable, str(SCRIPT), "--tiny", "--model-files", str(tmp_path)], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 2 and "--model-files" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.slow
def test_tiny_run_on_the_cpu(tmp_path, smollm2_dir):
    log = tmp_path / "net.log"
    env = netguard.install(tmp_path / "guard", log, dict(os.environ))
    env.update(LLMNAS_CACHE_DIR=str(tmp_path / "cache"), OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    r = subprocess.run([sys.executable, str(SCRIPT), "--tiny", "--model-files", str(smollm2_dir)], env=env,
                       capture_output=True, text=True, timeout=300, cwd=tmp_path)
    out = r.stdout
    assert r.returncode == 0, out[-3000:] + r.stderr[-3000:]
    summary = out.split("== summary (paste into the closing note) ==")[1].strip().splitlines()
    assert summary[0].startswith("gpu_check @") and "CPU only" in summary[0]
    firsts = [line.split(" ")[1].rstrip(",") for line in summary[1:]]
    assert firsts == ["generator", "LLM-driven", "trials", "precision"]
    assert "batch 1 " in summary[1] and "batch 8 " in summary[1]
    assert "accuracies identical across the two: yes" in summary[3]
    assert "bfloat16/channels_last" in summary[4] and "FAILED" not in out and "skipped" not in out
    assert netguard.non_loopback(netguard.read_log(log)) == []
