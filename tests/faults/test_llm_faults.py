"""LLM servers that fail: 5xx, resets, garbage, hangs, a missing vLLM. Bounded retries with backoff, one-line errors,
and a search that records what it could and stops with the reason."""
from __future__ import annotations

import json
import random
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from click.testing import CliRunner

from llmnas_local.cli.main import cli
from llmnas_local.dsl import get_space
from llmnas_local.llm import BackendError, OpenAIBackend
from llmnas_local.llm.openai_backend import MalformedAnswer, ServerUnreachable
from llmnas_local.store import LmdbStore
from tests.llm.common import PROMPT

NB201 = get_space("nb201")
CELLS = list(dict.fromkeys(NB201.canonical(NB201.parse(NB201.sample(random.Random(i)))) for i in range(400)))


class FakeServer:
    """A loopback OpenAI-compatible server whose next answers follow ``script``: "ok", "500", "reset", "garbage",
    "list", "hang" (the last one repeats). "ok" answers each choice with a cell of NAS-Bench-201 not given yet."""

    def __init__(self, script: list[str]):
        self.script, self.requests, self.cells = list(script), [], iter(CELLS)
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _send(self, code: int, raw: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_GET(self):
                self._send(200, json.dumps({"data": [{"id": "fake"}]}).encode())

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                mode = server.next()
                if mode == "500":
                    self._send(500, b'{"error": {"message": "engine overloaded"}}')
                elif mode == "reset":
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                    self.connection.close()
                elif mode == "garbage":
                    self._send(200, b"<html>502 Bad Gateway</html>")
                elif mode == "list":
                    self._send(200, b'[{"choices": []}]')
                elif mode == "hang":
                    time.sleep(30)
                else:
                    n = body.get("n", 1)
                    choices = [{"index": i, "message": {"content": next(server.cells)}, "finish_reason": "stop"}
                               for i in range(n)]
                    self._send(200, json.dumps({"choices": choices, "usage": {"prompt_tokens": 5}}).encode())

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def next(self) -> str:
        mode = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        self.requests.append(mode)
        return mode

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def fake():
    servers = []

    def make(*script: str) -> FakeServer:
        servers.append(FakeServer(list(script)))
        return servers[-1]
    yield make
    for s in servers:
        s.close()


def backend(server: FakeServer, **kw) -> OpenAIBackend:
    return OpenAIBackend(server.url, "fake", **{"backoff_s": 0.01, **kw})


@pytest.mark.parametrize("failure", ["500", "reset"])
def test_5xx_and_resets_are_retried_with_backoff(fake, failure):
    server = fake(failure, failure, "ok")
    [g] = backend(server).generate([PROMPT], n=2)
    assert len(g.texts) == 2 and server.requests == [failure, failure, "ok"]
    server = fake(failure)
    b = backend(server, retries=3, backoff_s=0.05)
    t0 = time.monotonic()
    with pytest.raises(BackendError, match=r"after 4 tries") as e:
        b.generate([PROMPT])
    assert server.requests == [failure] * 4 and time.monotonic() - t0 >= 0.05 + 0.1 + 0.2
    assert "\n" not in str(e.value)
    if failure == "500":
        assert "HTTP 500: engine overloaded" in str(e.value)
    else:
        assert isinstance(e.value, ServerUnreachable)


@pytest.mark.parametrize("answer, message", [("garbage", "the answer is not JSON"),
                                             ("list", r"not a chat completion \(AttributeError")])
def test_malformed_answers_are_one_line_and_not_retried(fake, answer, message):
    server = fake(answer)
    with pytest.raises(MalformedAnswer, match=message) as e:
        backend(server).generate([PROMPT])
    assert server.requests == [answer] and "\n" not in str(e.value)


def test_a_hang_ends_at_the_timeout_without_retries(fake):
    server = fake("hang")
    t0 = time.monotonic()
    with pytest.raises(ServerUnreachable, match=r"no answer .* within 1 s \(--llm-timeout\)"):
        backend(server, timeout_s=1.0).generate([PROMPT])
    assert time.monotonic() - t0 < 5 and server.requests == ["hang"]


def test_messages_name_cli_flags():
    with pytest.raises(BackendError, match=r"--llm-url") as e:
        OpenAIBackend("http://10.1.2.3:8000", "m")
    assert "allow_remote" not in str(e.value)
    with pytest.raises(BackendError, match=r"--llm-url"):
        OpenAIBackend("not a url", "m")
    from llmnas_local.llm import create_backend
    with pytest.raises(BackendError, match=r"--llm openai needs .* --llm-url") as e:
        create_backend("openai", model="m")
    assert "base_url" not in str(e.value)


def _search(tmp_path, nb201_csv, server: FakeServer, *extra: str):
    return CliRunner().invoke(cli, ["search", "--space", "nb201", "--table", str(nb201_csv), "--proposer", "llm",
                                    "--llm", "openai", "--llm-url", server.url, "--model", "fake", "--no-improver",
                                    "--budget", "6", "--store", str(tmp_path / "s"), "-q", *extra])


def test_a_search_rides_out_server_errors(tmp_path, nb201_csv, fake):
    server = fake("ok", "500", "reset", "ok")
    r = _search(tmp_path, nb201_csv, server)
    assert r.exit_code == 0, r.output
    assert server.requests[:4] == ["ok", "500", "reset", "ok"]
    with LmdbStore(tmp_path / "s", readonly=True) as st:
        assert sum(t.status.evaluated for t in st.trials()) == 6


@pytest.mark.parametrize("answer, extra, message", [
    ("list", (), "not a chat completion"),
    ("hang", ("--llm-timeout", "0.5"), "within 0.5 s (--llm-timeout)"),
])
def test_a_search_on_a_broken_server_stops_with_one_line_and_keeps_its_trials(tmp_path, nb201_csv, fake, answer,
                                                                             extra, message):
    server = fake("ok", answer)
    r = _search(tmp_path, nb201_csv, server, *extra)
    assert r.exit_code == 2, r.output
    [line] = r.output.strip().splitlines()
    assert "3 proposer calls in a row failed" in line and message in line and "Traceback" not in r.output, line
    with LmdbStore(tmp_path / "s", readonly=True) as st:
        trials = list(st.trials())
    assert sum(t.status.evaluated for t in trials) == 4          # the first call's 4 candidates, kept
    assert [t.error.startswith("proposer error") for t in trials[4:]] == [True, True]


def test_llm_timeout_is_for_servers(tmp_path, nb201_csv):
    r = CliRunner().invoke(cli, ["search", "--space", "nb201", "--table", str(nb201_csv), "--proposer", "llm",
                                 "--llm-timeout", "5", "--store", str(tmp_path / "s"), "-q"])
    assert r.exit_code == 2 and "--llm-timeout is for a server" in r.output, r.output


def test_vllm_missing_says_the_cause_and_the_fix(tmp_path):
    import sys

    from llmnas_local.llm import VllmServerBackend

    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"")
    with pytest.raises(BackendError) as e:
        VllmServerBackend(model, python=sys.executable, device="cpu", startup_timeout_s=60)
    text = str(e.value)
    assert "No module named 'vllm'" in text and "--vllm-python" in text and "\n" not in text, text
    assert text.index("No module named") < 200, text                   # the cause first, not the command line
