"""A whole search opens no connection other than loopback.

A complete short search runs in a subprocess under :mod:`tests.netguard`: a ``sitecustomize`` first on ``PYTHONPATH``
installs an audit hook in every Python process of the search (the CLI process, and the training worker it starts with
the same interpreter and environment) that records each address resolved or connected to. Every recorded address must
be loopback or an AF_UNIX path, and the hook must have been active in the search process and in at least one worker.
The hub libraries' offline switches must be on inside the search process even though the test does not set them:
importing llmnas_local sets them.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import netguard

# Small and fast: seed 107 on 8x8 digits under these caps proposes networks of at most 2 MFLOPs first (see
# test_resume_kill.py); one torch thread, as a loaded two-core machine trains much faster so.
RANDOM_ARGS = ["--space", "cnn", "--data", "digits", "--proposer", "random", "--budget", "2", "--train-size", "256",
               "--val-size", "128", "--test-size", "128", "--seed", "107", "--input-size", "8", "--max-params-m", "0.5",
               "--max-flops-m", "8", "--device", "cpu", "-q"]
# The LLM proposer with the embedded model, in-process (transformers + xgrammar): the digits defaults (16x16, caps of
# 1M parameters and 25 MFLOPs) and one evaluation.
LLM_ARGS = ["--space", "cnn", "--data", "digits", "--proposer", "llm", "--llm", "transformers", "--model", "smollm2",
            "--budget", "1", "--train-size", "256", "--val-size", "128", "--test-size", "128", "--candidates", "1",
            "--device", "cpu", "-q"]
WORKER_MODULE = "llmnas_local.evaluators.worker"


def guarded_env(tmp_path: Path) -> tuple[dict[str, str], Path]:
    base = {k: v for k, v in os.environ.items() if k not in netguard.HUB_VARS}   # llmnas_local must set them itself
    base["OMP_NUM_THREADS"] = "1"
    log = tmp_path / "net.log"
    return netguard.install(tmp_path / "guard", log, base), log


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "llmnas_local.cli.main", *args]


def llm_unavailable() -> str | None:
    """Why the LLM case cannot run here, or None."""
    try:
        import llmnas_local.llm  # noqa: F401
    except ImportError as e:
        return f"no LLM backend module (llmnas_local.llm): {e}"
    help_text = subprocess.run(cli("search", "--help"), capture_output=True, text=True).stdout
    proposer_help = next((ln for ln in help_text.splitlines() if "--proposer" in ln), "")
    if "llm" not in proposer_help:
        return "`llmnas search --help` offers no llm proposer"
    from llmnas_local.llm.models import EMBEDDED, get_model_info

    info = get_model_info(EMBEDDED)
    if info is None or not info.present:
        return (f"the embedded model {EMBEDDED!r} is not prepared (no weights at {info.path if info else '?'}; "
                f"`llmnas models prepare` or a first `llmnas search` makes it)")
    for module in ("transformers", "xgrammar"):
        try:
            __import__(module)
        except ImportError:
            return f"{module} is not installed"
    return None


@pytest.mark.slow    # spawns processes
def test_the_guard_records_every_process_and_flags_non_loopback_addresses(tmp_path):
    env, log = guarded_env(tmp_path)
    code = """
import socket, subprocess, sys
socket.getaddrinfo("127.0.0.1", 80, flags=socket.AI_NUMERICHOST)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.sendto(b"x", ("127.0.0.1", 9))
u = socket.socket(socket.AF_UNIX)
try:
    u.connect("/nonexistent/netguard.sock")
except OSError:
    pass
sys.audit("socket.connect", s, ("192.0.2.1", 80))      # as a connection out would report it, without making one
subprocess.run([sys.executable, "-c", "import socket; socket.getaddrinfo('::1', 80)"], check=True)
"""
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60)
    records = netguard.read_log(log)
    loads = [r for r in records if r["kind"] == "load"]
    assert len(loads) == 2 and loads[1]["ppid"] == loads[0]["pid"], loads
    events = [(r["event"], r["address"]) for r in records if r["kind"] == "event"]
    assert ("socket.getaddrinfo", "127.0.0.1") in events and ("socket.sendto", ["127.0.0.1", 9]) in events
    assert ("socket.connect", "/nonexistent/netguard.sock") in events and ("socket.getaddrinfo", "::1") in events
    assert [(r["event"], r["address"]) for r in netguard.non_loopback(records)] == [
        ("socket.connect", ["192.0.2.1", 80])]


@pytest.mark.parametrize("proposer", ["random", "llm"])
@pytest.mark.slow    # spawns processes
def test_a_whole_search_opens_no_connection_other_than_loopback(tmp_path, proposer):
    if proposer == "llm" and (reason := llm_unavailable()):
        pytest.skip(reason)
    env, log = guarded_env(tmp_path)
    args = RANDOM_ARGS if proposer == "random" else LLM_ARGS
    proc = subprocess.run(cli("search", *args, "--store", str(tmp_path / "store")), env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "evaluations; complete" in proc.stdout

    records = netguard.read_log(log)
    loads = {r["pid"]: r for r in records if r["kind"] == "load"}
    search = [pid for pid, r in loads.items() if "search" in r["argv"] and "llmnas_local.cli.main" in r["argv"]]
    assert len(search) == 1, f"the hook was not active in the search process: {list(loads.values())}"
    workers = [pid for pid, r in loads.items() if WORKER_MODULE in r["argv"] and r["ppid"] == search[0]]
    assert workers, f"the hook was not active in any training worker: {list(loads.values())}"

    bad = netguard.non_loopback(records)
    assert not bad, f"non-loopback network use: {bad}"

    exits = [r for r in records if r["kind"] == "exit" and r["pid"] == search[0]]
    assert exits and "llmnas_local" in exits[0]["modules"]
    assert exits[0]["env"]["HF_HUB_OFFLINE"] == "1" and exits[0]["env"]["TRANSFORMERS_OFFLINE"] == "1"
    # The workers inherit them from the search process, which set them when it imported llmnas_local.
    assert all(loads[w]["env"]["HF_HUB_OFFLINE"] == "1" == loads[w]["env"]["TRANSFORMERS_OFFLINE"] for w in workers)
    assert loads[search[0]]["env"]["HF_HUB_OFFLINE"] is None    # not set by the test: llmnas_local set it
