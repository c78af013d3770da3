"""Final training on real data (sklearn's digits): a training killed with SIGKILL resumes from its last checkpoint
and ends exactly where an uninterrupted one does; the result is stored with the architecture."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from llmnas_local.final import FinalConfig, train_final
from llmnas_local.records import TEST_ACC, VAL_ACC
from llmnas_local.store import LmdbStore

from .conftest import fill_store

EPOCHS = 8
ARGS = ("--epochs", str(EPOCHS), "--batch-size", "32")


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "llmnas_local.cli.main", *args]


def _comparable(final):
    """What must not change when a training is resumed: everything but wall times and creation time."""
    history = [{k: v for k, v in h.items() if k != "epoch_s"} for h in final.history]
    metrics = {k: v for k, v in final.metrics.items() if k != "train_s"}
    return history, metrics, final.best_epoch, final.weights_sha256, final.recipe_hash


@pytest.mark.slow
def test_kill_9_then_resume_ends_like_an_uninterrupted_training(digits_store, tmp_path):
    path, hashes = digits_store
    killed = subprocess.Popen(_cli("train", str(path), "--best", *ARGS), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(path.glob("finals/*/checkpoint.pt")):
        assert killed.poll() is None, killed.communicate()
        assert time.monotonic() < deadline, "no checkpoint within 120 s"
        time.sleep(0.01)
    os.kill(killed.pid, signal.SIGKILL)
    _, err = killed.communicate()
    assert killed.returncode == -signal.SIGKILL
    assert "done:" not in err                                  # killed after a checkpoint, before the end
    with LmdbStore(path, readonly=True) as st:
        assert st.finals() == []

    resumed = subprocess.run(_cli("train", str(path), hashes["small"][:10], *ARGS),
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from the checkpoint of epoch" in resumed.stderr
    assert "final: val_acc" in resumed.stdout
    assert not list(path.glob("finals/*/checkpoint.pt"))       # the checkpoint is gone once the result is stored

    # The uninterrupted training runs in a fresh process too: the pytest process may have fewer torch threads by now
    # (tests before this one set them), and a CPU result depends on how its sums were split among threads.
    with LmdbStore(tmp_path / "uninterrupted") as st:
        fill_store(st)
    whole_run = subprocess.run(_cli("train", str(tmp_path / "uninterrupted"), "--best", *ARGS), capture_output=True,
                               text=True, timeout=300)
    assert whole_run.returncode == 0, whole_run.stderr
    with LmdbStore(tmp_path / "uninterrupted", readonly=True) as st:
        [whole] = st.finals()
    with LmdbStore(path, readonly=True) as st:
        [final] = st.finals(hashes["small"])
    assert _comparable(final) == _comparable(whole)
    assert final.arch_hash == hashes["small"] and len(final.history) == EPOCHS
    assert final.history[final.best_epoch - 1][VAL_ACC] == final.metrics[VAL_ACC] == max(
        h[VAL_ACC] for h in final.history)                        # selected on validation
    assert final.metrics[VAL_ACC] > 50 and final.metrics[TEST_ACC] > 50    # it learned (10 classes: chance is 10)
    assert final.recipe["data"]["num_train"] == 1294            # the whole training split, not a proxy's subset
    assert (path / final.weights).is_file()

    again = subprocess.run(_cli("train", str(path), "--best", *ARGS), capture_output=True,
                           text=True, timeout=120)
    assert again.returncode == 0 and "already trained with this recipe" in again.stderr


@pytest.mark.slow
def test_progress_lines_and_data_check(digits_store, tmp_path, monkeypatch):
    import llmnas_local.final.train as train_module

    monkeypatch.setattr(train_module, "PROGRESS_EVERY_S", 0.0)      # a line within the epoch after every step
    path, hashes = digits_store
    lines: list[str] = []
    with LmdbStore(path) as st:
        with pytest.raises(ValueError, match="is not the data run random-s0-test was scored on"):
            train_final(st, best=True, data=str(_npz(tmp_path)), config=FinalConfig(epochs=1))
        final = train_final(st, hashes["other"][:8], data="digits", config=FinalConfig(epochs=2, augment="none"),
                            log=lines.append)
    assert final.arch_hash == hashes["other"] and final.recipe["augment"] == "none"
    epochs = [ln for ln in lines if ln.startswith("epoch ")]
    assert len(epochs) == 2 and all("val_acc" in ln and "ETA" in ln and "loss" in ln for ln in epochs)
    assert lines[-1].startswith("done: val_acc")
    steps = [ln for ln in lines if ln.startswith("  epoch 2/2  step ")]
    assert len(steps) == 1294 // 128 + 1 and "epoch ends in" in steps[0]


def _npz(tmp_path):
    import numpy as np

    rng = np.random.default_rng(0)
    path = tmp_path / "other.npz"
    np.savez(path, x_train=rng.integers(0, 255, (40, 16, 16), dtype=np.uint8), y_train=np.arange(40) % 10,
             x_test=rng.integers(0, 255, (10, 16, 16), dtype=np.uint8), y_test=np.arange(10))
    return path


def _imagefolder_tar(tmp_path):
    """A small RGB ImageFolder archive (3 classes of 16x16 PNGs whose colour is their class) as a user's data."""
    import tarfile

    import numpy as np
    from PIL import Image

    root = tmp_path / "pics"
    rng = np.random.default_rng(0)
    for split, n in (("train", 30), ("test", 6)):
        for c in range(3):
            (root / split / f"class{c}").mkdir(parents=True)
            for i in range(n):
                img = rng.integers(0, 60, (16, 16, 3), dtype=np.uint8)
                img[..., c] += 150
                Image.fromarray(img).save(root / split / f"class{c}" / f"{i}.png")
    tar = tmp_path / "pics.tar.gz"
    with tarfile.open(tar, "w:gz") as tf:
        tf.add(root, arcname="pics")
    return tar


@pytest.mark.slow
def test_data_found_by_fingerprint_in_the_cache(tmp_path, monkeypatch):
    """A search on a user's archive: the final training finds the decoded arrays in the cache by the run's
    fingerprint (the archive may have moved), or takes the archive itself; RGB data gets crop and flip."""
    monkeypatch.setenv("LLMNAS_CACHE_DIR", str(tmp_path / "cache"))
    tar = _imagefolder_tar(tmp_path)
    with LmdbStore(tmp_path / "store") as st:
        hashes = fill_store(st, data=str(tar))
        moved = tar.rename(tmp_path / "elsewhere.tar.gz")
        final = train_final(st, best=True, config=FinalConfig(epochs=3, batch_size=16))
        assert final.recipe["augment"] == "crop-flip" and final.recipe["data"]["num_classes"] == 3
        assert final.recipe["classes"] == ["class0", "class1", "class2"]
        assert final.recipe["data"]["fingerprint"] == st.get_run(final.run_id).recipe["data"]["fingerprint"]
        for cached in (tmp_path / "cache").glob("*.npz"):
            cached.unlink()
        with pytest.raises(ValueError, match="cannot find the data .* give --data"):
            train_final(st, hashes["other"], config=FinalConfig(epochs=1))
        again = train_final(st, hashes["other"], data=str(moved), config=FinalConfig(epochs=1, batch_size=16))
    assert again.metrics[TEST_ACC] >= 0 and final.metrics[VAL_ACC] > 60       # 3 classes by colour: learnt (100 here)
