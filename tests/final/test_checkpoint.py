"""The files of a final training: atomic writes, unreadable checkpoints, the lock."""
from __future__ import annotations

import pytest

from llmnas_local.final.checkpoint import atomic_write, load_checkpoint, save_checkpoint, training_lock


def test_atomic_write_keeps_the_old_file_when_the_write_fails(tmp_path):
    path = tmp_path / "f"
    path.write_text("old")

    def broken(tmp):
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        atomic_write(path, broken)
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["f"]
    atomic_write(path, lambda tmp: tmp.write_text("new"))
    assert path.read_text() == "new"


def test_checkpoint_round_trip_and_damage(tmp_path):
    import torch

    path = tmp_path / "checkpoint.pt"
    assert load_checkpoint(path, "cpu") is None
    save_checkpoint(path, {"epoch": 3, "model": {"w": torch.ones(2)}, "history": [{"val_acc": 1.5}]})
    back = load_checkpoint(path, "cpu")
    assert back["epoch"] == 3 and back["history"] == [{"val_acc": 1.5}] and torch.equal(back["model"]["w"],
                                                                                         torch.ones(2))
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="unreadable checkpoint .* delete it") as e:
        load_checkpoint(path, "cpu")
    assert "\n" not in str(e.value)


def test_one_trainer_at_a_time(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / ".checkpoint.pt.123.tmp").write_text("left by a killed process")
    with training_lock(tmp_path / "d"):
        assert not (tmp_path / "d" / ".checkpoint.pt.123.tmp").exists()
        with pytest.raises(ValueError, match="is being trained by PID"):
            with training_lock(tmp_path / "d"):
                pass
    with training_lock(tmp_path / "d"):          # released with its holder
        pass
