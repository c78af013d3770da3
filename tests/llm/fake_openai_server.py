"""A stand-in for ``python -m vllm.entrypoints.openai.api_server``: the process management of VllmServerBackend is
tested in seconds, without vLLM. Run as ``fake_openai_server.py -m vllm.entrypoints.openai.api_server --port P ...``.

It forks a helper child (like vLLM's engine core) so that tests see whether the whole process group goes, answers
/health, /v1/models and /v1/chat/completions (``n`` choices echoing the grammar's first quoted literal), and exits
with an error when started with ``--model /fail``.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-m", dest="module")
    parser.add_argument("--model")
    parser.add_argument("--served-model-name", default="fake")
    parser.add_argument("--port", type=int)
    parser.add_argument("--host", default="127.0.0.1")
    args, _ = parser.parse_known_args()
    print(f"fake server starting: {sys.argv[1:]}", flush=True)
    if args.model == "/fail" or os.path.basename(args.model or "") == "fail":
        print("ValueError: this model cannot be served (fake failure)", flush=True)
        sys.exit(3)
    helper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])  # the 'engine core'
    print(f"helper pid {helper.pid}", flush=True)
    time.sleep(float(os.environ.get("FAKE_START_S", "0.3")))

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def _send(self, code: int, body) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if self.path == "/health":
                self._send(200, {})
            elif self.path == "/v1/models":
                self._send(200, {"data": [{"id": args.served_model_name}]})
            else:
                self._send(404, {"error": {"message": "not found"}})

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if body.get("model") != args.served_model_name:
                self._send(404, {"error": {"message": f"The model `{body.get('model')}` does not exist."}})
                return
            so = body.get("structured_outputs") or {}
            literal = re.search(r'"([^"]*)"', so.get("grammar", "")) if "grammar" in so else None
            text = literal.group(1) if literal else json.dumps({"problem": "p", "modification": "m"})
            n = body.get("n", 1)
            choices = [{"index": i, "message": {"role": "assistant", "content": text}, "finish_reason": "stop",
                        "token_ids": list(range(len(text) + 1))} for i in range(n)]
            usage = {"prompt_tokens": 11, "completion_tokens": n * (len(text) + 1)}
            self._send(200, {"choices": choices, "usage": usage, "echo": {"seed": body.get("seed")}})

    ThreadingHTTPServer((args.host, args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
