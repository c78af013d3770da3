"""The model card written beside exported weights: what the model is, how it was trained and scored, and on what.

``model_card.json`` holds the facts (a tool reads them); ``model_card.md`` says the same for a person.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from llmnas_local.records import FLOPS_M, PARAMS_M, TEST_ACC, VAL_ACC, FinalRecord, TrialRecord

CARD_JSON = "model_card.json"
CARD_MD = "model_card.md"


def build_card(trial: TrialRecord, space: str, final: FinalRecord | None, *, fmt: str, file: str, sha256: str,
               shape: dict[str, int], params_m: float, flops_m: float, code_version: str,
               normalize: dict[str, Any] | None, classes: list[str] | None, data_fingerprint: str | None,
               untrained_seed: int | None = None) -> dict[str, Any]:
    """The card's facts. ``final`` None: the weights are freshly initialised (``untrained_seed``), not trained."""
    card: dict[str, Any] = {
        "architecture": trial.canonical, "space": space, "arch_hash": trial.arch_hash,
        "params_m": params_m, "flops_m": flops_m, "input": {**shape, "layout": "NCHW float32",
                                                            "normalize": normalize},
        "classes": classes, "data_fingerprint": data_fingerprint,
        "search": {"run_id": trial.run_id, "trial": trial.seq, "recipe_hash": trial.recipe_hash,
                   VAL_ACC: trial.metrics.get(VAL_ACC), TEST_ACC: trial.metrics.get(TEST_ACC),
                   "note": "proxy training of the search: selection by val_acc"},
        "format": fmt, "file": file, "sha256": sha256, "exported_with": code_version,
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if final is None:
        card["weights"] = f"UNTRAINED: freshly initialised (seed {untrained_seed}), exported with --untrained"
        card["final_training"] = None
    else:
        card["weights"] = "the final training's epoch with the best validation accuracy"
        card["final_training"] = {
            VAL_ACC: final.metrics.get(VAL_ACC), TEST_ACC: final.metrics.get(TEST_ACC),
            "best_epoch": final.best_epoch, "epochs": len(final.history), "recipe_hash": final.recipe_hash,
            "recipe": {k: v for k, v in final.recipe.items() if k not in ("normalize", "classes")},
            "trained_with": final.code_version, "weights_sha256": final.weights_sha256,
            "note": "test_acc measured once, on the weights selected by val_acc"}
    return card


def write_card(out: Path, card: dict[str, Any]) -> tuple[Path, Path]:
    """Write ``model_card.json`` and ``model_card.md`` into ``out``."""
    js, md = out / CARD_JSON, out / CARD_MD
    js.write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")
    md.write_text(card_markdown(card))
    return js, md


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}%"


def card_markdown(card: dict[str, Any]) -> str:
    final, search, inp = card["final_training"], card["search"], card["input"]
    lines = [f"# Model card: {card['arch_hash'][:12]}", "",
             f"- **Architecture** ({card['space']}): `{card['architecture']}`",
             f"- **Canonical hash**: `{card['arch_hash']}`",
             f"- **Size**: {card[PARAMS_M]:.4f} M parameters, {card[FLOPS_M]:.1f} M FLOPs per image",
             f"- **Input**: {inp.get('in_chans')} x {inp.get('input_size')} x {inp.get('input_size')} "
             f"({inp['layout']}), {inp.get('num_classes')} classes"
             + (f": {', '.join(map(str, card['classes']))}" if card.get("classes") else ""),
             f"- **Weights**: {card['weights']}",
             f"- **File**: `{card['file']}` ({card['format']}), sha256 `{card['sha256']}`"]
    if inp.get("normalize"):
        n = inp["normalize"]
        lines.append(f"- **Normalisation**: (x / 255 - mean) / std per channel, mean "
                     f"{[round(v, 4) for v in n['mean']]}, std {[round(v, 4) for v in n['std']]}")
    lines += ["", "## Accuracy", "", "| | val_acc | test_acc |", "|---|---|---|",
              f"| search proxy (run {search['run_id']}, trial {search['trial']}) | {_pct(search[VAL_ACC])} | "
              f"{_pct(search[TEST_ACC])} |"]
    if final:
        lines.append(f"| final training (epoch {final['best_epoch']} of {final['epochs']}) | {_pct(final[VAL_ACC])} | "
                     f"{_pct(final[TEST_ACC])} |")
        lines += ["", "Selection is by validation accuracy; the test accuracy was measured once, on the selected "
                  "weights.", "", "## Recipe", "", "```json", json.dumps(final["recipe"], indent=2, sort_keys=True),
                  "```"]
    else:
        lines += ["", "**These weights are not trained**: run `llmnas train` and export again for a usable model."]
    lines += ["", "## Provenance", "", f"- Data fingerprint (sha256 of the decoded images and labels): "
              f"`{card['data_fingerprint']}`",
              f"- Exported with llmnas_local {card['exported_with']} at {card['exported_at']}"]
    if final:
        lines.append(f"- Trained with llmnas_local {final['trained_with']}, recipe hash `{final['recipe_hash']}`")
    return "\n".join(lines) + "\n"
