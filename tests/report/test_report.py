"""The report: its page in a real headless browser (Debian's Chromium) loads every image and is not blank; the Pareto
front; the page's content. The store is written by hand (made-up scores: the figures are what is tested)."""
from __future__ import annotations

import os
import re
import shutil
import subprocess

import numpy as np
import pytest

from llmnas_local.records import (FLOPS_M, PARAMS_M, TEST_ACC, VAL_ACC, FinalRecord, LLMCall, RunRecord,
                                  TrialRecord, TrialStatus)
from llmnas_local.report import INDEX, pareto_front, write_report
from llmnas_local.store import MemoryStore

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
                  "--disable-default-apps", "--mute-audio")


def test_pareto_front():
    pts = [(90, 5.0), (80, 1.0), (85, 1.0), (95, 9.0), (70, 0.5), (94, 10.0), (95, 9.5)]
    assert pareto_front(pts, lambda p: p[0], lambda p: p[1]) == [(70, 0.5), (85, 1.0), (90, 5.0), (95, 9.0)]
    assert pareto_front([], lambda p: p[0], lambda p: p[1]) == []


def _store() -> MemoryStore:
    st = MemoryStore()
    st.put_run(RunRecord(run_id="llm-s0", space="cnn", proposer="llm", proposer_settings={}, evaluator="training",
                         recipe={}, recipe_hash="r" * 64, seed=0))
    rng = np.random.default_rng(0)
    statuses = [TrialStatus.COMPLETE] * 9 + [TrialStatus.INVALID, TrialStatus.FAILED, TrialStatus.DUPLICATE]
    for seq, status in enumerate(statuses):
        metrics = {VAL_ACC: float(rng.uniform(60, 95)), TEST_ACC: float(rng.uniform(60, 95)),
                   PARAMS_M: float(rng.uniform(0.01, 2)), FLOPS_M: float(rng.uniform(1, 50))} \
            if status is TrialStatus.COMPLETE else {}
        llm = LLMCall(call_id=str(seq // 3), model="smollm2", tokens_in=300, tokens_out=40 + seq, gen_s=2.5,
                      diagnosis={"problem": f"too shallow <{seq}>", "modification": "add a stage"} if seq % 3 == 0
                      else {})
        st.record_trial(TrialRecord(run_id="llm-s0", seq=seq, proposer="llm", raw=f"arch {seq}", status=status,
                                    canonical=f"arch {seq}", arch_hash=f"{seq:x}" * 64, recipe_hash="r" * 64,
                                    metrics=metrics, error="" if metrics else "rejected", llm=llm))
    best = max((t for t in st.trials() if t.metrics), key=lambda t: t.metrics[VAL_ACC])
    st.put_final(FinalRecord(arch_hash=best.arch_hash, recipe_hash="f" * 64, space="cnn", canonical=best.canonical,
                             run_id="llm-s0", trial_recipe_hash="r" * 64, recipe={}, best_epoch=3,
                             metrics={VAL_ACC: 97.25, TEST_ACC: 96.75}, history=[{}] * 4, weights="w",
                             weights_sha256="0", code_version="0.1.0"))
    return st


def test_page_content(tmp_path):
    page = write_report(_store(), tmp_path, source="test-store")
    text = page.read_text()
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["accuracy_vs_size.png", "best_so_far.png",
                                                                "llm_calls.png", "outcomes.png"]
    assert len(re.findall(r'<img src="data:image/png;base64,', text)) == 4            # embedded: one file to send
    assert not re.search(r'(src|href)="(https?:)?//', text)                             # nothing from elsewhere
    assert "97.25" in text and "96.75" in text                                          # the final training
    assert "too shallow &lt;0&gt;" in text                                              # diagnoses, escaped
    assert "complete 9, invalid 1, failed 1" in text
    assert "12 proposals;" in text and "repeats (never trained again): 1" in text


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        if os.environ.get("LLMNAS_REQUIRE_CHROMIUM") == "1":
            pytest.fail("LLMNAS_REQUIRE_CHROMIUM=1 but no chromium: .ci/run installs Debian's chromium")
        pytest.skip("chromium not installed (apt-get install -y chromium)")
    return exe


@pytest.mark.slow
def test_page_in_headless_chromium(tmp_path):
    from PIL import Image

    exe = _chromium()
    page = write_report(_store(), tmp_path / "report")
    url = page.resolve().as_uri()
    common = [exe, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*common, "--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    loaded = re.search(r'data-images-loaded="(\d+)/(\d+)"', dom.stdout)
    assert loaded, "the page's load script did not run"
    assert loaded.group(1) == loaded.group(2) == "4"                  # every image decoded, none missing
    shot = tmp_path / "shot.png"
    run = subprocess.run([*common, "--window-size=1200,1600", f"--screenshot={shot}", url], capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0 and shot.is_file(), run.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.shape == (1600, 1200)
    assert pixels.std() > 20 and (pixels < 128).mean() > 0.01         # not blank: text, axes and curves drawn
    assert page.name == INDEX


def test_many_runs(tmp_path):
    """Past 8 runs the curves and outcome bars are grouped by proposer (labels stay readable); every run is listed."""
    st = MemoryStore()
    for i in range(10):
        run_id = f"{'random' if i % 2 else 'evolution'}-s{i}"
        st.put_run(RunRecord(run_id=run_id, space="nb201", proposer=run_id.split("-")[0], proposer_settings={},
                             evaluator="tabular", recipe={}, recipe_hash="r" * 64, seed=i))
        for seq in range(3):
            st.record_trial(TrialRecord(run_id=run_id, seq=seq, proposer="random", raw="x", status=TrialStatus.COMPLETE,
                                        canonical=f"a{i}-{seq}", arch_hash=f"{i}{seq}" + "0" * 62, recipe_hash="r" * 64,
                                        metrics={VAL_ACC: 80.0 + i + seq, TEST_ACC: 79.0 + seq, PARAMS_M: 1.0 + seq,
                                                 FLOPS_M: 10.0 * (seq + 1)}))
    text = write_report(st, tmp_path).read_text()
    assert text.count("<td class=t>nb201</td>") == 10 and "llm_calls" not in text
    assert (tmp_path / "best_so_far.png").stat().st_size > 10_000
