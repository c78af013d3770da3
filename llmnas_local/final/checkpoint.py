"""Files of a final training: atomic writes (a ``kill -9`` leaves the old file or the new one, never half of one),
the per-epoch checkpoint, the weights as safetensors, and a lock so that one process trains one thing at a time."""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from pathlib import Path
from typing import Any, Callable, Iterator

CHECKPOINT = "checkpoint.pt"
WEIGHTS = "weights.safetensors"
LOCK = "lock"


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """``write(tmp)`` a sibling file, fsync it, rename it onto ``path`` and fsync the directory."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    import torch

    atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: Path, device: str) -> dict[str, Any] | None:
    """The checkpoint at ``path`` (tensors only, no code: ``weights_only``), or None if there is none."""
    import torch

    if not Path(path).exists():
        return None
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as e:  # noqa: BLE001 - whatever a damaged file raises
        raise ValueError(f"{path}: unreadable checkpoint ({' '.join(str(e).split())[:200]}); delete it to start "
                         f"the training over") from None


def save_weights(path: Path, state_dict: dict[str, Any], metadata: dict[str, str] | None = None) -> str:
    """Write a state dict as safetensors (atomically); return the file's sha256. (Metadata of more than one key is
    written in no fixed order: the same weights then make different bytes.)"""
    from safetensors.torch import save_file

    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))
    return file_sha256(path)


def load_weights(path: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(str(path))


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@contextlib.contextmanager
def training_lock(directory: Path) -> Iterator[None]:
    """Hold ``directory``'s lock (an ``flock``, released when the process dies); ValueError naming the holder if
    another process holds it."""
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "(starting)"
            raise ValueError(f"{directory} is being trained by PID {holder}: wait for it, or stop it") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        for tmp in directory.glob(".*.tmp"):          # what a process killed while writing left (see atomic_write)
            tmp.unlink(missing_ok=True)
        yield
    finally:
        os.close(fd)
