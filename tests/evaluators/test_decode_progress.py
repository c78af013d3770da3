"""A first decode of image files says what it reads, how far it is and where the cache goes (stderr); a cached load
says nothing."""
from __future__ import annotations

import io
import tarfile

import numpy as np
from PIL import Image

from llmnas_local.evaluators.data import DataSpec, load_dataset


def _tar(path, per_class: int) -> None:
    rng = np.random.default_rng(0)
    with tarfile.open(path, "w:gz") as tf:
        for split in ("train", "test"):
            for cls in ("a", "b"):
                for i in range(per_class):
                    buf = io.BytesIO()
                    Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(buf, "PNG")
                    info = tarfile.TarInfo(f"set/{split}/{cls}/{i:05d}.png")
                    info.size = len(buf.getvalue())
                    tf.addfile(info, io.BytesIO(buf.getvalue()))


def test_a_first_decode_reports_progress_and_the_cache_then_a_cached_load_is_silent(tmp_path, capsys):
    _tar(tmp_path / "set.tar.gz", per_class=2500)             # 10,000 images: progress every tenth
    spec = DataSpec(source=str(tmp_path / "set.tar.gz"), cache_dir=str(tmp_path / "cache"))
    load_dataset(spec)
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith(f"decoding {tmp_path / 'set.tar.gz'} (imagefolder-tar): first use, the arrays will be "
                             f"cached in {tmp_path / 'cache'}")
    assert [line for line in err if "images decoded" in line][-1] == "  10,000 / 10,000 images decoded"
    assert len([line for line in err if "images decoded" in line]) == 10
    assert err[-1].startswith("decoded 5,000 training and 5,000 test images; cached in ")
    load_dataset(spec)
    assert capsys.readouterr().err == ""
