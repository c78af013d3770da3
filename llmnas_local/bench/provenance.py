"""Where a benchmark's numbers come from: code version, package versions, machine, data and model files.

Hashes of large files are cached by (path, size, mtime) in ``$XDG_CACHE_HOME/llmnas/file_hashes.json`` (default
``~/.cache``), so that a report of a 15 GB model folder costs its hashing once.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable

PACKAGES = ("llmnas_local", "torch", "timm", "transformers", "xgrammar", "lmdb", "numpy", "matplotlib", "vllm")
_REPO = Path(__file__).resolve().parents[2]


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


class HashCache:
    """sha256 of files keyed by (resolved path, size, mtime_ns); a read-only or absent cache only costs time."""

    def __init__(self, path: str | os.PathLike | None = None):
        if path is None:
            base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
            path = base / "llmnas" / "file_hashes.json"
        self.path = Path(path)
        try:
            self._data: dict[str, str] = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self._data = {}
        self._dirty = False

    def sha256(self, path: str | os.PathLike) -> str:
        p = Path(path).resolve()
        st = p.stat()
        key = f"{p}|{st.st_size}|{st.st_mtime_ns}"
        if key not in self._data:
            self._data[key] = sha256_file(p)
            self._dirty = True
        return self._data[key]

    def save(self) -> None:
        if not self._dirty:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(f".tmp{os.getpid()}")
            tmp.write_text(json.dumps(self._data, indent=0, sort_keys=True))
            os.replace(tmp, self.path)
            self._dirty = False
        except OSError:
            pass


def git_info(repo: Path = _REPO) -> dict[str, Any]:
    """Commit and dirty flag of the checkout the package runs from (read-only git commands)."""
    def git(*args: str) -> str | None:
        try:
            r = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return r.stdout.strip() if r.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None, "note": "not a git checkout"}
    status = git("status", "--porcelain", "--untracked-files=normal") or ""
    changed = [line[3:] for line in status.splitlines() if line.strip()]
    return {"commit": commit, "dirty": bool(changed), "changed_files": len(changed),
            "branch": git("rev-parse", "--abbrev-ref", "HEAD")}


def package_versions(names: Iterable[str] = PACKAGES) -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {"platform": platform.platform(), "machine": platform.machine(),
                            "hostname": platform.node(), "cpu_count": os.cpu_count()}
    try:
        info["cpu_affinity"] = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        pass
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        info["cpu_model"] = platform.processor() or None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["memory_gib"] = round(int(line.split()[1]) / 2**20, 1)
                break
    except OSError:
        pass
    try:
        info["load_avg"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        pass
    info["gpus"] = _gpus()
    return info


def _gpus() -> list[dict[str, str]]:
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        r = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                           capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return []
    gpus = []
    for line in r.stdout.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 3:
            gpus.append({"name": parts[0], "memory": parts[1], "driver": parts[2]})
    return gpus


def file_info(path: str | os.PathLike, cache: HashCache) -> dict[str, Any]:
    p = Path(path)
    st = p.stat()
    return {"path": str(p), "bytes": st.st_size, "sha256": cache.sha256(p)}


def model_location(name: str) -> Path | None:
    """A model folder or file from its name as the grid gives it: a path, or a registry name whose weights are there.
    Never downloads or prepares anything."""
    p = Path(name).expanduser()
    if p.exists():
        return p.resolve()
    try:
        from llmnas_local.llm.models import get_model_info

        info = get_model_info(name)
    except Exception:       # no registry: the name stays unresolved
        return None
    return info.path.resolve() if info is not None and info.present else None


def model_files(name: str, cache: HashCache) -> dict[str, Any]:
    """Every file of a model folder (or one model file) with its size and sha256 (cached by mtime)."""
    p = model_location(name)
    if p is None:
        return {"name": name, "path": None, "files": [], "note": "not found on this machine"}
    if p.is_file():
        return {"name": name, "path": str(p), "bytes": p.stat().st_size,
                "files": [file_info(p, cache) | {"path": p.name}]}
    files = []
    for f in sorted(q for q in p.rglob("*") if q.is_file() and not q.name.startswith(".")):
        files.append(file_info(f, cache) | {"path": str(f.relative_to(p))})
    return {"name": name, "path": str(p), "bytes": sum(f["bytes"] for f in files), "files": files}


def collect_provenance(config_json: dict[str, Any], *, table: str | None = None,
                       models: Iterable[str] = (), extra: dict[str, Any] | None = None,
                       cache: HashCache | None = None) -> dict[str, Any]:
    cache = cache or HashCache()
    out: dict[str, Any] = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": sys.argv,
        "git": git_info(),
        "packages": package_versions(),
        "machine": machine_info(),
        "seeds": config_json.get("seeds"),
        "grid": config_json,
    }
    if table is not None:
        out["table"] = file_info(table, cache)
    found: dict[str, dict[str, Any]] = {}
    for name in sorted(set(models)):
        info = model_files(name, cache)
        found.setdefault(info["path"] or f"?{name}", info)      # a name and its folder: listed once
    if found:
        out["models"] = list(found.values())
    out.update(extra or {})
    cache.save()
    return out
