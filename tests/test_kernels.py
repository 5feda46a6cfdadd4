"""Kernels against cleanlab's own functions, without Beam."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from cleanlab.count import _reduce_issues
from cleanlab.rank import _compute_label_quality_scores

from beam_labelissues import kernels
from datasets import DatasetSpec, make_dataset


def _data(n=2000, k=10, seed=0, dtype="float64"):
    labels, probs = make_dataset(DatasetSpec(n, k, dtype, "int64", 0.2, seed=seed))
    return labels, probs


@pytest.mark.parametrize(
    "method,adjust",
    [(m, a) for m in kernels.METHODS for a in (False, True) if not (a and m == "confidence_weighted_entropy")],
)
def test_scores_equal_cleanlab(method, adjust):
    labels, probs = _data(seed=3)
    thresholds = np.linspace(0.3, 0.9, probs.shape[1])
    ours = kernels.label_quality_scores(labels, probs, thresholds, method=method, adjust=adjust)
    theirs = _compute_label_quality_scores(labels, probs, method=method, adjust_pred_probs=adjust,
                                           confident_thresholds=thresholds)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-12)
    assert ours.dtype == np.float64


def test_entropy_clips_tolerated_probabilities_where_cleanlab_would_raise():
    labels = np.array([0, 1])
    probs = np.array([[1.00001, 0.0], [0.2, 0.8]])
    ours = kernels.label_quality_scores(labels, probs, np.array([0.5, 0.5]), "confidence_weighted_entropy")
    theirs = _compute_label_quality_scores(labels, np.clip(probs, 0, 1), method="confidence_weighted_entropy")
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-15)


def test_agreement_equals_cleanlab_reduce_issues():
    labels, probs = _data(seed=4)
    probs[:50] = 0.25  # exact ties: the 1e-6 bump decides
    probs[:50, :4] = 0.25
    np.testing.assert_array_equal(kernels.predictions(labels, probs)[2], _reduce_issues(probs, labels))


def test_exact_sums_are_exact_and_order_independent():
    rng = np.random.default_rng(1)
    values = np.concatenate([rng.random(5000), rng.random(100) * 1e-300, [0.0, 5e-324, 1.0, -1e-5]])
    labels = rng.integers(0, 3, size=len(values))
    totals = kernels.exact_sums_by_class(labels, values, 3)
    for k in range(3):
        exact = sum(map(Fraction, values[labels == k].tolist()), Fraction(0))
        assert Fraction(totals[k], 2 ** 1126) == exact
    perm = rng.permutation(len(values))
    split = [kernels.exact_sums_by_class(labels[perm][i::7], values[perm][i::7], 3) for i in range(7)]
    assert [sum(parts) for parts in zip(*split)] == totals


def test_thresholds_are_correctly_rounded_means_and_unseen_class_gets_2e6():
    values = np.array([0.1, 0.2, 0.7, 1e-9])
    labels = np.array([0, 0, 0, 1])
    thresholds = kernels.confident_thresholds(kernels.exact_sums_by_class(labels, values, 3),
                                              np.bincount(labels, minlength=3))
    assert thresholds[0] == float(Fraction(0.1) / 3 + Fraction(0.2) / 3 + Fraction(0.7) / 3)
    assert thresholds[1] == 2e-6  # clipped
    assert thresholds[2] == 2e-6  # never a label


@pytest.mark.parametrize("estimation_method", kernels.ESTIMATION_METHODS)
def test_issue_count_equals_label_inspector(estimation_method):
    from cleanlab.experimental.label_issues_batched import LabelInspector

    labels, probs = _data(n=5000, seed=6)
    inspector = LabelInspector(num_class=10, verbose=False, n_jobs=1,
                               num_issue_kwargs={"estimation_method": estimation_method})
    inspector.update_confident_thresholds(labels, probs)
    inspector.score_label_quality(labels, probs)
    thresholds = inspector.get_confident_thresholds(silent=True)
    predicted = kernels.predicted_labels(probs)
    confident = kernels.confident_predictions(probs[np.arange(len(labels)), predicted], predicted, thresholds)
    stats = kernels.issue_count_stats(labels, predicted, confident, 10)
    assert kernels.estimate_num_issues(*stats, estimation_method) == inspector.get_num_issues(silent=True)


def test_score_bins_are_monotone_and_cutoff_covers_the_lowest_n():
    rng = np.random.default_rng(2)
    scores = np.sort(np.concatenate([rng.random(10000), [0.0, 1.0, -1e-5, 1 + 1e-5, 0.5, 0.5]]))
    bins = kernels.score_bins(scores, 1024)
    assert (np.diff(bins) >= 0).all() and bins.min() == 0 and bins.max() == 1023
    histogram = np.bincount(bins, minlength=1024)
    for n in [1, 7, 500, len(scores)]:
        cut = kernels.cutoff_bin(histogram, n)
        assert (bins[:n] <= cut).all() and (bins <= cut).sum() >= n
    assert kernels.cutoff_bin(histogram, 0) == -1


def test_lowest_by_score_then_id_breaks_ties_by_id_for_ints_and_strings():
    scores = np.array([0.5, 0.1, 0.5, 0.1, 0.3])
    ids = np.array([9, 8, 1, 2, 5])
    np.testing.assert_array_equal(kernels.lowest_by_score_then_id(scores, ids, 4), [3, 1, 4, 2])
    string_ids = np.array(["e", "d", "a", "b", "c"], dtype=object)
    np.testing.assert_array_equal(kernels.lowest_by_score_then_id(scores, string_ids, 5), [3, 1, 4, 2, 0])


def test_rank_ranges_respect_the_budget_and_offsets_count_the_issues_before():
    histogram = np.array([0, 3, 0, 5, 1, 1, 0, 9, 2, 0])
    assert kernels.plan_rank_ranges(histogram, 9, 5) == [(1, 0), (3, 3), (4, 8), (7, 10), (8, 19)]
    assert kernels.plan_rank_ranges(histogram, 8, 5) == [(1, 0), (3, 3), (4, 8), (7, 10)]
    assert kernels.plan_rank_ranges(histogram, 8, 10**9) == [(1, 0)]
    assert kernels.plan_rank_ranges(histogram, 1, 5) == []
    assert kernels.plan_rank_ranges(histogram, -1, 5) == []


def test_model_agrees_matches_reduce_issues_on_exact_ties_in_either_order():
    labels = np.array([0, 1, 2, 2, 0])
    probs = np.array([
        [0.4, 0.4, 0.2],          # tie, label first: agrees
        [0.4, 0.4, 0.2],          # tie, label second: the bump decides
        [0.3, 0.3, 0.3 - 1e-6],   # the bump brings the label level with the max
        [0.5, 0.5 - 2e-6, 0.0],   # the bump falls short
        [0.1, 0.2, 0.7],
    ])
    np.testing.assert_array_equal(kernels.predictions(labels, probs)[2], _reduce_issues(probs, labels))
