"""From a search to a model: choose an architecture of a store (:mod:`.select`), train it fully (:mod:`.train`,
``train_final``), export its weights and model card (:mod:`.export`, ``export_model``). torch is imported on use."""
from __future__ import annotations

from llmnas_local.final.select import select_trial
from llmnas_local.final.train import FinalConfig, train_final

__all__ = ["FinalConfig", "select_trial", "train_final"]
