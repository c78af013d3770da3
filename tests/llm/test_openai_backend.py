"""The OpenAI-compatible client against a small local stand-in server (no vLLM needed)."""
import subprocess
import sys
import time

import pytest

from llmnas_local.llm import BackendError, Constraint, OpenAIBackend
from llmnas_local.llm.openai_backend import ServerUnreachable, is_loopback, server_healthy
from llmnas_local.llm.vllm_server import free_port
from tests.llm.common import DIAGNOSIS_SCHEMA, PROMPT
from tests.llm.conftest import FAKE_SERVER


@pytest.fixture(scope="module")
def server():
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(FAKE_SERVER), "--port", str(port), "--served-model-name", "tiny",
                             "--model", "x"], stdout=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while not server_healthy(url, 1.0):
        assert proc.poll() is None and time.monotonic() < deadline, "fake server did not start"
        time.sleep(0.1)
    yield url
    import os
    import signal
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def test_refuses_remote_urls():
    for url in ("http://10.0.0.5:8000", "https://api.openai.com/v1", "http://gpu-node:8000"):
        with pytest.raises(BackendError, match="non-loopback"):
            OpenAIBackend(url, "m")
    b = OpenAIBackend("http://gpu-node:8000/v1/", "m", allow_remote=True)   # explicit opt-in; no request made
    assert b.base_url == "http://gpu-node:8000"
    assert all(is_loopback(h) for h in ("localhost", "127.0.0.1", "127.3.2.1", "::1", "[::1]"))
    assert not is_loopback("localhost.example.com")


def test_closed_port_is_a_clear_error():
    port = free_port()
    with pytest.raises(ServerUnreachable, match=f"127.0.0.1:{port}.*is it running"):
        OpenAIBackend(f"http://127.0.0.1:{port}")                           # lists models: fails
    b = OpenAIBackend(f"http://127.0.0.1:{port}", "m", timeout_s=5)
    with pytest.raises(BackendError, match="cannot reach"):
        b.generate([PROMPT])
    assert not b.health()


@pytest.mark.slow    # spawns processes
def test_generate_against_a_server(server):
    b = OpenAIBackend(server)                                               # model name from /v1/models
    assert b.model == "tiny"
    gens = b.generate([PROMPT] * 3, Constraint(grammar='root ::= "ir_r1_k3" | "x"'), n=2, seed=5)
    assert [g.texts for g in gens] == [["ir_r1_k3"] * 2] * 3
    assert gens[0].completions[0].tokens_out == 9 and gens[0].tokens_in == 11
    [g] = b.generate([PROMPT], Constraint(json_schema=DIAGNOSIS_SCHEMA))
    assert g.texts == ['{"problem": "p", "modification": "m"}']
    with pytest.raises(BackendError, match="HTTP 404: The model `nope` does not exist"):
        OpenAIBackend(server, "nope").generate([PROMPT])


def test_request_bodies_per_dialect():
    g, j = Constraint(grammar='root ::= "a"'), Constraint(json_schema={"type": "object"})
    def body(d, c):
        return OpenAIBackend("http://127.0.0.1:1", "m", dialect=d).request_body(
            PROMPT, c, n=4, max_tokens=8, temperature=0.5, top_p=0.9, seed=3)

    assert body("vllm", g)["structured_outputs"] == {"grammar": 'root ::= "a"'}
    assert body("vllm", j)["structured_outputs"]["json"] == {"type": "object"}
    assert body("vllm", g)["n"] == 4 and body("vllm", g)["seed"] == 3 and body("vllm", g)["return_token_ids"]
    assert body("sglang", g)["ebnf"] == 'root ::= "a"'
    assert body("sglang", j)["response_format"]["json_schema"]["schema"] == {"type": "object"}
    assert body("llamacpp", g)["grammar"] == 'root ::= "a"' and body("llamacpp", j)["json_schema"] == {"type": "object"}
    with pytest.raises(BackendError, match="dialect"):
        OpenAIBackend("http://127.0.0.1:1", "m", dialect="tgi")
