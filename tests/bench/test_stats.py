"""Statistics of the benchmark: summaries, bands, wins/ties/losses and the bootstrap CI of a paired difference."""
from __future__ import annotations

import math

import numpy as np
import pytest

from llmnas_local.bench.stats import (BETTER, NO_DIFFERENCE, TOO_FEW, WORSE, band, bootstrap_ci, curve_matrix,
                                      paired_comparison, published_check, summarize, wins_ties_losses)


def test_summarize_drops_nan_and_uses_sample_std():
    s = summarize([1.0, 2.0, 3.0, math.nan])
    assert s.n == 3 and s.mean == 2.0 and s.std == pytest.approx(1.0) and s.median == 2.0
    assert s.ci95 == pytest.approx(1.96 / math.sqrt(3))
    assert summarize([5.0]).std == 0.0 and summarize([]).n == 0 and math.isnan(summarize([math.nan]).mean)


def test_curve_matrix_pads_and_cuts_and_band():
    m = curve_matrix([[1.0, 2.0, 3.0, 4.0], [3.0, 4.0]], 3)
    assert m.shape == (2, 3) and np.isnan(m[1, 2]) and m[0, 2] == 3.0
    mean, lo, hi = band(m, "std")
    assert mean.tolist() == [2.0, 3.0, 3.0] and lo[0] == pytest.approx(2 - math.sqrt(2)) and hi[2] == 3.0
    _, lo95, _ = band(m, "ci95")
    assert lo95[0] == pytest.approx(2 - 1.96 * math.sqrt(2) / math.sqrt(2))


def test_wins_ties_losses():
    assert wins_ties_losses([0.5, 0.0, -0.1, 1e-12, 2.0]) == (2, 2, 1)


def test_bootstrap_ci_is_seeded_and_covers_the_mean():
    x = np.random.default_rng(1).normal(0.3, 1.0, 50)
    a, b = bootstrap_ci(x, seed=7), bootstrap_ci(x, seed=7)
    assert a == b and a[0] < x.mean() < a[1]
    assert bootstrap_ci(x, seed=8) != a


def test_clear_shift_is_better_or_worse():
    rng = np.random.default_rng(0)
    ref = {s: 93.0 + rng.normal(0, 0.3) for s in range(30)}
    up = {s: v + 0.4 + rng.normal(0, 0.1) for s, v in ref.items()}
    c = paired_comparison("new", "ref", 100, up, ref)
    assert c.verdict == BETTER and c.ci_low > 0 and c.wins == 30 and c.losses == 0 and c.n == 30
    down = paired_comparison("ref", "new", 100, ref, up)
    assert down.verdict == WORSE and down.ci_high < 0 and down.losses == 30


def test_noise_is_no_significant_difference():
    rng = np.random.default_rng(3)
    ref = {s: 93.0 + rng.normal(0, 0.3) for s in range(30)}
    noisy = {s: v + rng.normal(0, 0.3) for s, v in ref.items()}
    c = paired_comparison("new", "ref", 100, noisy, ref, resamples=10_000, seed=0)
    assert c.verdict == NO_DIFFERENCE and c.ci_low < 0 < c.ci_high
    assert c.wins + c.ties + c.losses == 30


def test_pairs_only_common_finite_seeds():
    c = paired_comparison("a", "b", 10, {0: 1.0, 1: 2.0, 2: math.nan, 3: 5.0}, {0: 1.0, 1: 1.0, 2: 1.0})
    assert c.n == 2 and (c.wins, c.ties, c.losses) == (1, 1, 0)
    assert paired_comparison("a", "b", 10, {0: 1.0}, {0: 0.0}).verdict == TOO_FEW


def test_identical_runs_have_a_zero_width_ci():
    same = {s: 93.0 + s / 100 for s in range(10)}
    c = paired_comparison("a", "b", 10, same, dict(same))
    assert (c.ties, c.mean_diff, c.ci_low, c.ci_high, c.verdict) == (10, 0.0, 0.0, 0.0, NO_DIFFERENCE)


def test_published_check():
    s = summarize([93.8, 93.9, 93.7, 93.8])
    assert published_check(s, 93.80, 0.26)["within_noise"]
    assert not published_check(s, 94.5, 0.26)["within_noise"]
