"""A network guard for subprocess tests: a ``sitecustomize`` that records, in every Python process of a test, each
address the process resolves or connects to, through audit hooks (PEP 578).

``install(directory, log)`` writes ``directory/sitecustomize.py`` and returns the environment variables that make a
child load it: ``directory`` first on ``PYTHONPATH`` (children that extend ``PYTHONPATH`` keep it, so a worker process
started with the same interpreter and environment loads it too) and the log path. Each process appends JSON lines to
the log (``O_APPEND``, one ``write`` per line, so processes do not interleave):

- ``{"kind": "load", "pid", "ppid", "argv", "env"}`` once the hook is installed, ``env`` being the hub variables then;
- ``{"kind": "event", "pid", "event", "family", "address"}`` for socket.connect / getaddrinfo / sendto / sendmsg /
  gethostbyname / gethostbyaddr;
- ``{"kind": "exit", "pid", "env", "modules"}`` at a normal interpreter exit (not after SIGKILL or ``os._exit``).

``non_loopback(records)`` lists the events whose address is not loopback (127.0.0.0/8, ::1, localhost) and not an
AF_UNIX path.
"""
from __future__ import annotations

import ipaddress
import json
import os
import socket
from pathlib import Path

LOG_VAR = "NETGUARD_LOG"
HUB_VARS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")
EVENTS = ("socket.connect", "socket.getaddrinfo", "socket.sendto", "socket.sendmsg", "socket.gethostbyname",
          "socket.gethostbyaddr")

SITECUSTOMIZE = '''\
"""Written by tests/netguard.py: records network look-ups and connections of this process (audit hooks)."""
import json as _json
import os as _os
import sys as _sys

_LOG = _os.environ.get(%(log_var)r)
_EVENTS = frozenset(%(events)r)
_HUB = %(hub)r


def _write(record):
    record["pid"] = _os.getpid()
    line = (_json.dumps(record, default=repr) + "\\n").encode()
    fd = _os.open(_LOG, _os.O_WRONLY | _os.O_APPEND | _os.O_CREAT, 0o644)
    try:
        _os.write(fd, line)
    finally:
        _os.close(fd)


def _address(value):
    if isinstance(value, (bytes, bytearray)):
        return value.decode("latin-1")
    if isinstance(value, tuple):
        return [_address(v) for v in value]
    return value


def _hook(event, args):
    if event not in _EVENTS:
        return
    try:
        if event in ("socket.connect", "socket.sendto", "socket.sendmsg"):
            family, address = int(getattr(args[0], "family", -1)), args[1]
            if address is None:            # sendmsg on a connected socket: its connect was recorded
                return
        elif event == "socket.getaddrinfo":
            family, address = int(args[2] or 0), args[0]
        else:
            family, address = -1, args[0]
        _write({"kind": "event", "event": event, "family": family, "address": _address(address)})
    except Exception as e:                 # never break the process under test; leave a trace instead
        try:
            _write({"kind": "event", "event": event, "family": -1, "address": None, "hook_error": repr(e)})
        except Exception:
            pass


if _LOG:
    _sys.addaudithook(_hook)
    try:
        _argv = open("/proc/self/cmdline", "rb").read().decode(errors="replace").split("\\0")[:-1]
    except OSError:
        _argv = list(_sys.argv)
    _write({"kind": "load", "ppid": _os.getppid(), "argv": _argv,
            "env": {k: _os.environ.get(k) for k in _HUB}})

    def _at_exit():
        _write({"kind": "exit", "env": {k: _os.environ.get(k) for k in _HUB},
                "modules": sorted(m for m in ("llmnas_local", "torch", "transformers", "huggingface_hub")
                                  if m in _sys.modules)})

    import atexit as _atexit

    _atexit.register(_at_exit)
'''


def install(directory: Path, log: Path, base_env: dict[str, str] | None = None) -> dict[str, str]:
    """Write the sitecustomize into ``directory``; return ``base_env`` (default: ``os.environ``) with it first on
    ``PYTHONPATH`` and the log path set."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "sitecustomize.py").write_text(
        SITECUSTOMIZE % {"log_var": LOG_VAR, "events": EVENTS, "hub": HUB_VARS})
    env = dict(os.environ if base_env is None else base_env)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(directory), env.get("PYTHONPATH")) if p)
    env[LOG_VAR] = str(log)
    return env


def read_log(log: Path) -> list[dict]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def is_loopback_host(host: object) -> bool:
    if host is None or host == "":          # getaddrinfo(None, port): the local host
        return True
    if not isinstance(host, str):
        return False
    if host.lower().rstrip(".") in ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"):
        return True
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def is_loopback(record: dict) -> bool:
    """Whether an event's address stays on this machine: an AF_UNIX path, or a loopback host."""
    family, address = record.get("family"), record.get("address")
    if family == int(socket.AF_UNIX):
        return True
    if isinstance(address, list):           # (host, port) or (host, port, flowinfo, scope_id)
        return bool(address) and is_loopback_host(address[0])
    return is_loopback_host(address)


def non_loopback(records: list[dict]) -> list[dict]:
    return [r for r in records if r.get("kind") == "event" and (r.get("hook_error") or not is_loopback(r))]
