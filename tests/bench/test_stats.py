"""Statistics of the benchmark: summaries, bands, wins/ties/losses, the paired t-interval and Holm's adjustment."""
from __future__ import annotations

import math

import numpy as np
import pytest

from llmnas_local.bench.stats import (BETTER, TIE, TOO_FEW, WORSE, PairedComparison, band, curve_matrix, holm,
                                      holm_verdicts, paired_comparison, paired_t, published_check, summarize,
                                      wins_ties_losses)

T_975_DF1, T_975_DF2, T_975_DF4 = 12.706204736174707, 4.302652729749464, 2.7764451051977934   # tables of Student's t


def test_summarize_drops_nan_and_uses_sample_std_and_the_t_quantile():
    s = summarize([1.0, 2.0, 3.0, math.nan])
    assert s.n == 3 and s.mean == 2.0 and s.std == pytest.approx(1.0) and s.median == 2.0
    assert s.ci95 == pytest.approx(T_975_DF2 / math.sqrt(3))
    assert summarize([5.0]).std == 0.0 and math.isnan(summarize([5.0]).ci95)
    assert summarize([]).n == 0 and math.isnan(summarize([math.nan]).mean)


def test_curve_matrix_pads_and_cuts_and_band():
    m = curve_matrix([[1.0, 2.0, 3.0, 4.0], [3.0, 4.0]], 3)
    assert m.shape == (2, 3) and np.isnan(m[1, 2]) and m[0, 2] == 3.0
    mean, lo, hi, n = band(m, "std")
    assert mean.tolist() == [2.0, 3.0, 3.0] and n.tolist() == [2, 2, 1]
    assert lo[0] == pytest.approx(2 - math.sqrt(2)) and hi[2] == 3.0
    _, lo95, hi95, _ = band(m, "ci95")       # n = 2: t quantile with 1 df, not 1.96
    assert lo95[0] == pytest.approx(2 - T_975_DF1 * math.sqrt(2) / math.sqrt(2)) and hi95[2] == 3.0


def test_wins_ties_losses():
    assert wins_ties_losses([0.5, 0.0, -0.1, 1e-12, 2.0]) == (2, 2, 1)


def test_paired_t_matches_a_hand_computation():
    # d = 1..5: mean 3, sd sqrt(2.5), se sqrt(0.5); t = 3 / sqrt(0.5) = 4.2426 on 4 df
    mean, lo, hi, p = paired_t([1.0, 2.0, 3.0, 4.0, 5.0])
    half = T_975_DF4 * math.sqrt(2.5) / math.sqrt(5)
    assert mean == 3.0 and lo == pytest.approx(3 - half, abs=1e-9) and hi == pytest.approx(3 + half, abs=1e-9)
    assert (lo, hi) == pytest.approx((1.036756, 4.963244), abs=1e-6)
    assert p == pytest.approx(0.013236, abs=1e-6)        # 2 * (1 - F_t4(4.2426))
    from scipy.stats import ttest_1samp

    assert p == pytest.approx(ttest_1samp([1, 2, 3, 4, 5], 0.0).pvalue)
    assert all(math.isnan(v) for v in paired_t([2.0])[1:]) and paired_t([2.0])[0] == 2.0


def test_holm_on_a_known_set():
    # sorted 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 = 0.02, 0.03, 0.06, 0.04 -> running max 0.02, 0.03, 0.06, 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    out = holm([math.nan, 0.01, 0.04])            # no p-value: not in the family (m = 2)
    assert math.isnan(out[0]) and out[1:] == pytest.approx([0.02, 0.04])
    assert holm([0.3, 0.04]) == pytest.approx([0.3, 0.08]) and holm([0.6, 0.7, 0.8]) == [1.0, 1.0, 1.0]


def test_holm_verdicts_adjust_over_the_family():
    def comp(name, mean, p):
        return PairedComparison(name, "ref", 10, 5, 0, 0, 0, mean, mean - 1, mean + 1, p)

    family = [comp("a", -0.5, 0.004), comp("b", +0.5, 0.03), comp("c", +0.5, 0.04), comp("d", 0.1, math.nan),
              comp("e", +0.5, 0.001)]
    # sorted 0.001, 0.004, 0.03, 0.04 -> x4, x3, x2, x1 = 0.004, 0.012, 0.06, 0.04 -> running max: 0.06 for the last two
    out = holm_verdicts(family)
    assert [c.verdict for c in out] == [WORSE, TIE, TIE, TOO_FEW, BETTER]   # b or c alone (p < 0.05): "better"
    assert [c.family for c in out] == [4] * 5
    assert [c.p_holm for c in out] == pytest.approx([0.012, 0.06, 0.06, math.nan, 0.004], nan_ok=True)
    assert holm_verdicts(family[1:2])[0].verdict == BETTER


def test_clear_shift_is_better_or_worse():
    rng = np.random.default_rng(0)
    ref = {s: 93.0 + rng.normal(0, 0.3) for s in range(30)}
    up = {s: v + 0.4 + rng.normal(0, 0.1) for s, v in ref.items()}
    c = paired_comparison("new", "ref", 100, up, ref)
    assert c.verdict == BETTER and c.ci_low > 0 and c.wins == 30 and c.losses == 0 and c.n == 30 and c.p_value < 1e-6
    down = paired_comparison("ref", "new", 100, ref, up)
    assert down.verdict == WORSE and down.ci_high < 0 and down.losses == 30


def test_noise_is_a_tie():
    rng = np.random.default_rng(3)
    ref = {s: 93.0 + rng.normal(0, 0.3) for s in range(30)}
    noisy = {s: v + rng.normal(0, 0.3) for s, v in ref.items()}
    c = paired_comparison("new", "ref", 100, noisy, ref)
    assert c.verdict == TIE and c.ci_low < 0 < c.ci_high and c.p_value > 0.05
    assert c.wins + c.ties + c.losses == 30


def test_pairs_only_common_finite_seeds():
    c = paired_comparison("a", "b", 10, {0: 1.0, 1: 2.0, 2: math.nan, 3: 5.0}, {0: 1.0, 1: 1.0, 2: 1.0})
    assert c.n == 2 and (c.wins, c.ties, c.losses) == (1, 1, 0)
    one = paired_comparison("a", "b", 10, {0: 1.0}, {0: 0.0})
    assert one.verdict == TOO_FEW and math.isnan(one.ci_low) and math.isnan(one.p_value) and one.mean_diff == 1.0
    assert one.to_json()["ci_low"] is None and one.to_json()["p_value"] is None


def test_identical_runs_have_a_zero_width_ci():
    same = {s: 93.0 + s / 100 for s in range(10)}
    c = paired_comparison("a", "b", 10, same, dict(same))
    assert (c.ties, c.mean_diff, c.ci_low, c.ci_high, c.p_value, c.verdict) == (10, 0.0, 0.0, 0.0, 1.0, TIE)


def test_published_check():
    s = summarize([93.8, 93.9, 93.7, 93.8])
    assert published_check(s, 93.80, 0.26)["within_noise"]
    assert not published_check(s, 94.5, 0.26)["within_noise"]
