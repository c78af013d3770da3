"""A store as a digits search leaves it, without running one: the run's recipe is a real TrainingEvaluator's (so its
data fingerprint names sklearn's digits at 16 px), the trials are written by hand with made-up proxy scores (a
fixture: the final training and the export on top of it are real)."""
from __future__ import annotations

import pytest

from llmnas_local.records import FLOPS_M, PARAMS_M, TEST_ACC, VAL_ACC, RunRecord, TrialRecord, TrialStatus

SMALL = "stem_k3_s2_c8_nre ds_r1_k3_s1_c16_se0_nre head_c32_nre"      # the best by (made-up) validation accuracy
OTHER = "stem_k3_s1_c8_nre cn_r1_k3_s2_c16_nre head_c32_nre"
REJECTED = "stem_k3_s1_c64_nre cn_r4_k7_s1_c512_nre head_c512_nre"
RUN = "random-s0-test"


def fill_store(store, data: str = "digits") -> dict[str, str]:
    """Write the run (scored on ``data``) and its trials into ``store``; return {"small": hash, "other": hash,
    "rejected": hash}."""
    from llmnas_local.dsl import get_space
    from llmnas_local.evaluators import create_evaluator

    space = get_space("cnn")
    evaluator = create_evaluator(space, data=data)
    try:
        recipe, rhash = evaluator.recipe(), evaluator.recipe_hash()
    finally:
        evaluator.close()
    store.put_run(RunRecord(run_id=RUN, space="cnn", proposer="random", proposer_settings={}, evaluator="training",
                            recipe=recipe, recipe_hash=rhash, seed=0))
    hashes = {}
    rows = [("small", SMALL, TrialStatus.COMPLETE, {VAL_ACC: 91.5, TEST_ACC: 90.0, PARAMS_M: 0.004, FLOPS_M: 0.2}),
            ("rejected", REJECTED, TrialStatus.INVALID, {}),
            ("other", OTHER, TrialStatus.COMPLETE, {VAL_ACC: 85.0, TEST_ACC: 86.0, PARAMS_M: 0.003, FLOPS_M: 0.5})]
    for seq, (name, text, status, metrics) in enumerate(rows):
        spec = space.parse(text)
        hashes[name] = space.arch_hash(spec)
        store.record_trial(TrialRecord(run_id=RUN, seq=seq, proposer="random", raw=text, status=status,
                                       canonical=space.canonical(spec), arch_hash=hashes[name], recipe_hash=rhash,
                                       metrics=metrics, error="rejected: too large" if metrics == {} else ""))
    return hashes


@pytest.fixture
def digits_store(tmp_path):
    """(path of an LMDB store filled by :func:`fill_store`, its hashes)."""
    from llmnas_local.store import LmdbStore

    path = tmp_path / "store"
    with LmdbStore(path) as st:
        hashes = fill_store(st)
    return path, hashes
