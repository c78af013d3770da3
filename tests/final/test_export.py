"""Export: each format loads back (safetensors into the built model, ONNX in onnxruntime, TorchScript with
torch.jit.load) and gives the PyTorch model's outputs; the card says what the weights are."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from llmnas_local.final import FinalConfig, train_final
from llmnas_local.final.export import FORMATS, build_exported, export_model
from llmnas_local.records import TEST_ACC, VAL_ACC
from llmnas_local.store import LmdbStore

from .conftest import fill_store

ATOL = 1e-4


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A store whose best architecture has a real (2-epoch) final training."""
    path = tmp_path_factory.mktemp("export") / "store"
    with LmdbStore(path) as st:
        hashes = fill_store(st)
        final = train_final(st, best=True, config=FinalConfig(epochs=2, batch_size=32))
    return path, hashes, final


def _reference(path, final):
    """The PyTorch model with the final training's weights, and a batch of inputs."""
    import torch

    from llmnas_local.final.checkpoint import load_weights

    shape = {k: final.recipe["data"][k] for k in ("num_classes", "in_chans", "input_size")}
    model = build_exported(final.space, final.canonical, shape, load_weights(path / final.weights))
    x = torch.randn(5, shape["in_chans"], shape["input_size"], shape["input_size"], generator=torch.Generator()
                    .manual_seed(1))
    with torch.no_grad():
        return model, x, model(x).numpy(), shape


@pytest.mark.slow
@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_format_loads_back_and_agrees(trained, tmp_path, fmt):
    import torch

    path, hashes, final = trained
    with LmdbStore(path, readonly=True) as st:
        result = export_model(st, hashes["small"][:8], fmt=fmt, out=tmp_path)
    model, x, expected, shape = _reference(path, final)
    if fmt == "safetensors":
        from safetensors.torch import load_file

        fresh = build_exported(final.space, final.canonical, shape, seed=123)     # other random weights first
        fresh.load_state_dict(load_file(str(result.path)))
        with torch.no_grad():
            got = fresh(x).numpy()
    elif fmt == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
        got = session.run(["logits"], {"image": x.numpy()})[0]
        one = session.run(["logits"], {"image": x[:1].numpy()})[0]             # the batch axis is dynamic
        np.testing.assert_allclose(one, expected[:1], atol=ATOL)
    else:
        with warnings.catch_warnings():                   # torch.jit.load is deprecated (torch.export), still there
            warnings.simplefilter("ignore", FutureWarning)
            loaded = torch.jit.load(str(result.path))
        with torch.no_grad():
            got = loaded(x).numpy()
    np.testing.assert_allclose(got, expected, atol=ATOL)
    assert np.abs(expected).max() > 1e-3                      # a model that outputs zeros would agree trivially

    card = json.loads(result.card_json.read_text())
    assert card["arch_hash"] == hashes["small"] and card["architecture"] == final.canonical
    assert card["final_training"][VAL_ACC] == final.metrics[VAL_ACC]
    assert card["final_training"][TEST_ACC] == final.metrics[TEST_ACC]
    assert card["data_fingerprint"] == final.recipe["data"]["fingerprint"]
    assert card["params_m"] > 0 and card["flops_m"] > 0 and card["exported_with"].startswith("0.")
    assert card["classes"] == [str(i) for i in range(10)] and len(card["input"]["normalize"]["mean"]) == 1
    md = result.card_md.read_text()
    assert final.canonical in md and hashes["small"] in md and "UNTRAINED" not in md


@pytest.mark.slow
def test_untrained_only_when_asked(trained, tmp_path):
    path, hashes, _ = trained
    with LmdbStore(path, readonly=True) as st:
        with pytest.raises(ValueError, match="no final training .* pass --untrained"):
            export_model(st, hashes["other"], fmt="onnx", out=tmp_path)
        result = export_model(st, hashes["other"], fmt="safetensors", out=tmp_path, untrained=True)
        with pytest.raises(ValueError, match="has a final training"):
            export_model(st, hashes["small"], fmt="onnx", out=tmp_path, untrained=True)
    assert result.card["final_training"] is None and result.card["weights"].startswith("UNTRAINED")
    assert "**These weights are not trained**" in result.card_md.read_text()


@pytest.mark.slow
def test_changed_weights_are_refused(trained, tmp_path):
    path, hashes, final = trained
    weights = path / final.weights
    original = weights.read_bytes()
    try:
        weights.write_bytes(original[:-4] + b"\0\0\0\0")
        with LmdbStore(path, readonly=True) as st, pytest.raises(ValueError, match="sha256 differs"):
            export_model(st, hashes["small"], fmt="safetensors", out=tmp_path)
    finally:
        weights.write_bytes(original)
