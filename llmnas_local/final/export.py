"""Export an architecture's weights as safetensors, ONNX or TorchScript, with a model card.

The weights are those of the architecture's final training (``llmnas train``; the one with the best validation
accuracy when there are several); without one, a freshly initialised model only when asked (``untrained=True``), and
the card says so. Files: ``model.safetensors`` (the state dict of the model :func:`build_exported` builds),
``model.onnx`` (legacy TorchScript-based exporter, input ``image`` and output ``logits`` with a dynamic batch axis) or
``model.torchscript.pt`` (``torch.jit.trace``), then ``model_card.json`` and ``model_card.md``.
"""
from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path
from typing import Any

from llmnas_local.final.card import build_card, write_card
from llmnas_local.final.checkpoint import file_sha256, load_weights
from llmnas_local.final.select import select_trial
from llmnas_local.final.train import code_version
from llmnas_local.records import VAL_ACC, FinalRecord
from llmnas_local.store.base import BaseStore

FORMATS = {"safetensors": "model.safetensors", "onnx": "model.onnx", "torchscript": "model.torchscript.pt"}
INPUT_NAME, OUTPUT_NAME = "image", "logits"


@dataclasses.dataclass(frozen=True)
class ExportResult:
    path: Path                  # the model file
    card_json: Path
    card_md: Path
    card: dict[str, Any]


def build_exported(space_name: str, canonical: str, shape: dict[str, int], weights: dict[str, Any] | None = None,
                   seed: int = 0):
    """The architecture as a model in eval mode, with ``weights`` (a state dict) or freshly initialised by ``seed``."""
    import torch

    from llmnas_local.dsl import get_space

    space = get_space(space_name)
    torch.manual_seed(seed)
    model = space.build(space.parse(canonical), num_classes=shape["num_classes"], in_chans=shape["in_chans"],
                        input_size=shape["input_size"])
    if weights is not None:
        model.load_state_dict(weights)
    return model.eval()


def _shape(data: dict[str, Any] | None, what: str) -> dict[str, int]:
    if not data or not all(k in data for k in ("num_classes", "in_chans", "input_size")):
        raise ValueError(f"{what} names no image shape (a table look-up run?): train it first (llmnas train --data)")
    return {k: int(data[k]) for k in ("num_classes", "in_chans", "input_size")}


def export_model(store: BaseStore, arch: str | None = None, *, best: bool = False, run_id: str | None = None,
                 fmt: str = "safetensors", out: str | Path, untrained: bool = False, store_dir: str | Path | None = None,
                 seed: int = 0) -> ExportResult:
    """Write the model of an architecture of ``store`` (see :func:`select_trial`) in ``fmt`` into ``out``, with its
    model card. ValueError (one line) when there is nothing to export: no final training and not ``untrained``."""
    import torch

    if fmt not in FORMATS:
        raise ValueError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    where = str(store_dir or getattr(store, "path", "the store"))
    trial = select_trial(store, arch, best=best, run_id=run_id, where=where)
    run = store.get_run(trial.run_id)
    finals = store.finals(trial.arch_hash)
    final = max(finals, key=lambda f: (f.metrics.get(VAL_ACC, -1.0), f.created_at)) if finals else None
    if final is None and not untrained:
        raise ValueError(f"architecture {trial.arch_hash[:12]} has no final training in {where}: run llmnas train "
                         f"{where} {trial.arch_hash[:12]} first, or pass --untrained for freshly initialised weights")
    if final is not None and untrained:
        raise ValueError(f"architecture {trial.arch_hash[:12]} has a final training: --untrained would export "
                         f"random weights instead of it; leave it out")
    if final is not None:
        weights, shape = _final_weights(final, store_dir or getattr(store, "path", None)), \
            _shape(final.recipe.get("data"), "its final training")
        normalize, classes = final.recipe.get("normalize"), final.recipe.get("classes")
        fingerprint = final.recipe["data"].get("fingerprint")
    else:
        data = run.recipe.get("data")
        weights, shape = None, _shape(data, f"run {run.run_id}")
        normalize, classes, fingerprint = None, None, data.get("fingerprint")
    model = build_exported(run.space, trial.canonical, shape, weights, seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / FORMATS[fmt]
    _write(model, fmt, path, shape, {"arch_hash": trial.arch_hash, "canonical": trial.canonical, "space": run.space})
    from llmnas_local.builder import profile_model

    with torch.no_grad():
        profile = profile_model(model, shape["num_classes"], shape["in_chans"], shape["input_size"])
    card = build_card(trial, run.space, final, fmt=fmt, file=path.name, sha256=file_sha256(path), shape=shape,
                      params_m=profile.params_m, flops_m=profile.flops_m, code_version=code_version(),
                      normalize=normalize, classes=classes, data_fingerprint=fingerprint,
                      untrained_seed=None if final else seed)
    js, md = write_card(out, card)
    return ExportResult(path, js, md, card)


def _final_weights(final: FinalRecord, store_dir: str | Path | None) -> dict[str, Any]:
    if store_dir is None:
        raise ValueError("give store_dir: the final training's weights live beside the store's data")
    path = Path(store_dir) / final.weights
    if not path.is_file():
        raise ValueError(f"the weights of the final training are missing: {path}")
    if file_sha256(path) != final.weights_sha256:
        raise ValueError(f"{path} is not the final training's weights (sha256 differs from the record's)")
    return load_weights(path)


def _write(model, fmt: str, path: Path, shape: dict[str, int], metadata: dict[str, str]) -> None:
    import torch

    example = torch.zeros(1, shape["in_chans"], shape["input_size"], shape["input_size"])
    if fmt == "safetensors":
        from safetensors.torch import save_file

        save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(path), metadata=metadata)
        return
    with warnings.catch_warnings():             # both exporters warn that newer ones exist (torch.export)
        warnings.simplefilter("ignore")
        if fmt == "onnx":
            torch.onnx.export(model, (example,), str(path), dynamo=False, input_names=[INPUT_NAME],
                              output_names=[OUTPUT_NAME],
                              dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}})
        else:
            with torch.no_grad():
                traced = torch.jit.trace(model, example)
            traced.save(str(path))

