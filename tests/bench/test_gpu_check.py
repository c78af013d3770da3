"""benchmarks/gpu_check.py on the CPU with tiny budgets (``--tiny``), as CI runs it: every section runs, none fails,
the summary block has a line per figure, and nothing reaches the network. The GPU figures need a GPU machine."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests import netguard
from tests.conftest import REPO

SCRIPT = REPO / "benchmarks" / "gpu_check.py"


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
    assert [line.split(" ")[1].rstrip(",") for line in summary[1:]] == ["generator", "LLM-driven", "trials", "precision"]
    assert "batch 1 " in summary[1] and "batch 8 " in summary[1]
    assert "accuracies identical across the two: yes" in summary[3]
    assert "bfloat16/channels_last" in summary[4] and "FAILED" not in out and "skipped" not in out
    assert netguard.non_loopback(netguard.read_log(log)) == []
