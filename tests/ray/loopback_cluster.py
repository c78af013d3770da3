"""A real two-node Ray cluster on one machine, reachable on loopback only, for the cluster tests and the benchmark.

Ray replaces 127.0.0.1 by the machine's routed address when it picks a node's address, and then listens on every
interface; so the cluster runs in a private network namespace (``unshare -n``, as root) whose only interface is
loopback: nothing it starts can listen beyond 127.0.0.1, by construction. Every command of the cluster (the head, the
second node, the search drivers) enters that namespace with ``nsenter``; the file system is shared.

The head and the second node are ``ray start --block`` processes, each in its own session: stopping one is a SIGKILL
to its process group (its raylet, object store and worker processes), never ``ray stop`` (which ends every Ray process
of the machine, other users' too).
"""
from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
PORT = 6379          # free by construction: the namespace is private


def namespace_reason() -> str | None:
    """Why a loopback-only cluster cannot be made here (None: it can)."""
    for tool in ("unshare", "nsenter", "ip"):
        if shutil.which(tool) is None:
            return f"{tool} not found"
    if not (BIN / "ray").exists():
        return "ray is not installed (pip install 'llmnas_local[ray]')"
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True)
    if probe.returncode != 0:
        return f"cannot make a network namespace (unshare -n: {probe.stderr.decode().strip()[:100]}; needs root)"
    return None


class LoopbackCluster:
    """A head (``cpus`` CPUs) and a second node, in a loopback-only network namespace. Use as a context manager."""

    def __init__(self, cpus: int = 1, env: dict[str, str] | None = None):
        self.cpus = cpus
        # Token authentication, with a token of this cluster's own (not the user's ~/.ray/auth_token).
        self.env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token",
                    "RAY_AUTH_TOKEN": secrets.token_hex(32), **(env or {})}
        for var in ("RAY_ADDRESS", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"):   # the latter set by a local instance
            self.env.pop(var, None)
        self.temp = Path(tempfile.mkdtemp(prefix="llray"))      # short: Ray's socket paths must fit in 107 bytes
        self.address = f"127.0.0.1:{PORT}"
        self._ns: subprocess.Popen | None = None
        self.head: subprocess.Popen | None = None
        self.node: subprocess.Popen | None = None
        self._procs: list[subprocess.Popen] = []

    # -- commands in the namespace ----------------------------------------------------------------------------------
    def command(self, args: list[str]) -> list[str]:
        return ["nsenter", "-t", str(self._ns.pid), "-n", *args]

    def popen(self, args: list[str], log: Path, **kwargs) -> subprocess.Popen:
        """``args`` in the namespace, in its own process group (its pid is the group id), output into ``log``."""
        with open(log, "ab") as f:
            proc = subprocess.Popen(self.command(args), stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True, env={**self.env, **kwargs.pop("env", {})}, **kwargs)
        self._procs.append(proc)
        return proc

    def run(self, args: list[str], timeout: float, log: Path, **kwargs) -> int:
        proc = self.popen(args, log, **kwargs)
        try:
            return proc.wait(timeout=timeout)
        finally:
            kill_group(proc)

    # -- the cluster ------------------------------------------------------------------------------------------------
    def __enter__(self) -> "LoopbackCluster":
        self._ns = subprocess.Popen(["unshare", "-n", "sh", "-c", "ip link set lo up && exec sleep 86400"],
                                    start_new_session=True)
        try:
            self._wait_for(lambda: _has_loopback(self._ns.pid), 10, "the network namespace")
            self.head = self.popen([str(BIN / "ray"), "start", "--head", "--block", "--node-ip-address", "127.0.0.1",
                                    "--port", str(PORT), "--include-dashboard", "false", "--num-cpus", str(self.cpus),
                                    "--num-gpus", "0", "--temp-dir", str(self.temp), "--disable-usage-stats"],
                                   self.temp / "head.log")
            self._wait_nodes(1)
            self.start_node()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def start_node(self) -> None:
        """Start (or restart) the second node and wait until the cluster has two."""
        self.node = self.popen([str(BIN / "ray"), "start", "--address", self.address, "--block",
                                "--num-cpus", str(self.cpus), "--num-gpus", "0"], self.temp / "node.log")
        self._wait_nodes(2)

    def kill_node(self) -> None:
        """SIGKILL the second node: its raylet, object store and every worker process on it."""
        kill_group(self.node)

    def alive_nodes(self) -> int:
        out = subprocess.run(self.command([sys.executable, "-c", _COUNT_NODES, self.address]), capture_output=True,
                             env=self.env, timeout=60)
        return int(out.stdout.decode().strip() or -1) if out.returncode == 0 else -1

    def _wait_nodes(self, n: int, timeout: float = 60) -> None:
        self._wait_for(lambda: self.alive_nodes() == n, timeout, f"{n} Ray node(s)")

    def _wait_for(self, ok, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ok():
                return
            time.sleep(0.5)
        logs = "".join(p.read_text(errors="replace")[-2000:] for p in self.temp.glob("*.log"))
        raise RuntimeError(f"{what} not up after {timeout:.0f} s; logs: {logs}")

    def processes(self) -> list[int]:
        """Every process in the cluster's namespace: all were started here (the nodes, their workers, drivers)."""
        if self._ns is None:
            return []
        try:
            ns = os.readlink(f"/proc/{self._ns.pid}/ns/net")
        except OSError:
            return []
        pids = []
        for entry in Path("/proc").iterdir():
            try:
                if entry.name.isdigit() and os.readlink(entry / "ns" / "net") == ns:
                    pids.append(int(entry.name))
            except OSError:
                continue
        return pids

    def __exit__(self, *exc) -> None:
        for proc in reversed(self._procs):
            kill_group(proc)
        deadline = time.monotonic() + 20       # what was in no group of ours (Ray's workers have their own): killed
        while (left := [p for p in self.processes() if p != self._ns.pid]) and time.monotonic() < deadline:
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            time.sleep(0.2)
        if self._ns is not None:
            kill_group(self._ns)
        shutil.rmtree(self.temp, ignore_errors=True)


_COUNT_NODES = """
import sys, ray
ray.init(address=sys.argv[1], log_to_driver=False, logging_level="ERROR")
print(sum(1 for n in ray.nodes() if n["Alive"]))
"""


def kill_group(proc: subprocess.Popen | None) -> None:
    """SIGKILL a process started in its own session, and everything in its group; then reap it."""
    if proc is None:
        return
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pass


def _has_loopback(pid: int) -> bool:
    out = subprocess.run(["nsenter", "-t", str(pid), "-n", "ip", "-o", "link", "show", "lo"], capture_output=True)
    return out.returncode == 0 and b"UP" in out.stdout
