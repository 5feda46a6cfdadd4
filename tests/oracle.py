"""cleanlab as the test oracle: what find_label_issues_batched / LabelInspector answer.

The pipeline computes in float64 whatever the input dtype, so the oracle runs
cleanlab on the same values cast to float64 (exact for float16 and float32).

The pipeline's thresholds are exact means (correctly rounded, independent of
batching); cleanlab's running mean differs from them in the last bits, which
is enough to break exact ties in adjusted scores. So the oracle checks
cleanlab's thresholds against the exact means (1e-9) and then lets cleanlab
score and count with the exact means, computed here independently with
``fractions.Fraction``.
cleanlab ranks with an unstable argsort; the contract ranks ties by id, so the
expected order is cleanlab's scores sorted stably, and the expected set is
cleanlab's whenever the n-th score is not tied with the (n+1)-th.
"""

from __future__ import annotations

import dataclasses
from fractions import Fraction
from typing import Optional

import numpy as np
from cleanlab.experimental.label_issues_batched import LabelInspector, find_label_issues_batched


@dataclasses.dataclass
class Expected:
    thresholds: np.ndarray
    examples_per_class: np.ndarray
    scores: np.ndarray
    num_issues: int
    issue_ids: np.ndarray  # in rank order: score ascending, ties by id
    mask: np.ndarray
    boundary_tied: bool
    given_prob: np.ndarray  # every row's probability of its given label
    predicted_prob: np.ndarray  # every row's probability of its predicted class (numpy's argmax)


def exact_mean_thresholds(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Correctly rounded per-class mean self-confidence, clipped at 2e-6 (unseen: 2e-6)."""
    confidence = probs[np.arange(len(labels)), labels]
    thresholds = []
    for k in range(probs.shape[1]):
        values = confidence[labels == k]
        mean = float(sum(map(Fraction, values.tolist()), Fraction(0)) / len(values)) if len(values) else 0.0
        thresholds.append(max(mean, 2e-6))
    return np.array(thresholds)


def cleanlab_expected(
    labels: np.ndarray,
    pred_probs: np.ndarray,
    *,
    method: str = "self_confidence",
    adjust_pred_probs: bool = False,
    estimation_method: str = "off_diagonal",
    batch_size: int = 10000,
    clip_for_entropy: bool = True,
) -> Expected:
    labels = np.asarray(labels).astype(np.int64)
    probs = np.asarray(pred_probs, dtype=np.float64)
    rows = np.arange(len(labels))
    given_prob, predicted_prob = probs[rows, labels], probs.max(axis=1)  # as given, before any clipping
    if method == "confidence_weighted_entropy" and clip_for_entropy:
        probs = np.clip(probs, 0.0, 1.0)
    quality_kwargs = {"method": method, "adjust_pred_probs": adjust_pred_probs}
    issue_kwargs = {"estimation_method": estimation_method}
    inspector = LabelInspector(
        num_class=probs.shape[1],
        verbose=False,
        n_jobs=1,
        quality_score_kwargs=quality_kwargs,
        num_issue_kwargs=issue_kwargs,
    )
    for start in range(0, len(labels), batch_size):
        inspector.update_confident_thresholds(labels[start:start + batch_size], probs[start:start + batch_size])
    cleanlab_thresholds = np.array(inspector.get_confident_thresholds(silent=True), dtype=np.float64)
    exact = exact_mean_thresholds(labels, probs)
    np.testing.assert_allclose(cleanlab_thresholds, exact, rtol=0, atol=1e-9)
    inspector.confident_thresholds = exact
    for start in range(0, len(labels), batch_size):
        inspector.score_label_quality(labels[start:start + batch_size], probs[start:start + batch_size])
    scores = inspector.get_quality_scores().astype(np.float64)
    num_issues = int(inspector.get_num_issues(silent=True))
    # find_label_issues_batched computes its own thresholds: its set is compared only
    # where no score is tied at the boundary.
    mask = find_label_issues_batched(
        labels,
        probs,
        batch_size=batch_size,
        n_jobs=1,
        verbose=False,
        quality_score_kwargs=quality_kwargs,
        num_issue_kwargs=issue_kwargs,
        return_mask=True,
    )
    stable = np.lexsort((np.arange(len(scores)), scores))
    lowest = stable[:num_issues]
    bumped = probs.copy()
    bumped[np.arange(len(labels)), labels] += 1e-6
    agrees = np.argmax(bumped, axis=1) == labels
    issue_ids = lowest[~agrees[lowest]]
    tied = 0 < num_issues < len(scores) and scores[stable[num_issues - 1]] == scores[stable[num_issues]]
    return Expected(
        thresholds=np.asarray(inspector.get_confident_thresholds(silent=True), dtype=np.float64),
        examples_per_class=np.bincount(labels, minlength=probs.shape[1]),
        scores=scores,
        num_issues=num_issues,
        issue_ids=issue_ids,
        mask=np.asarray(mask),
        boundary_tied=bool(tied),
        given_prob=given_prob,
        predicted_prob=predicted_prob,
    )


def assert_matches(expected: Expected, issues, summary: dict, scores_table=None, atol: float = 1e-12,
                   threshold_atol: float = 0.0, check_cleanlab_set: Optional[bool] = None) -> None:
    """Asserts a pipeline's outputs equal the oracle's: set, ranks, scores, counts, thresholds."""
    ids = np.asarray(issues["id"], dtype=np.int64)
    ranks = np.asarray(issues["rank"], dtype=np.int64)
    order = np.argsort(ranks)
    assert (ranks[order] == np.arange(len(ranks))).all(), "ranks are not 0..n-1"
    ids = ids[order]
    np.testing.assert_array_equal(ids, expected.issue_ids, err_msg="issues or their ranks differ")
    if check_cleanlab_set is None:
        check_cleanlab_set = not expected.boundary_tied
    if check_cleanlab_set:
        np.testing.assert_array_equal(np.sort(ids), np.flatnonzero(expected.mask),
                                      err_msg="issue set differs from find_label_issues_batched")
    np.testing.assert_allclose(np.asarray(issues["label_quality"])[order], expected.scores[ids], rtol=0, atol=atol)
    np.testing.assert_array_equal(np.asarray(issues["given_label_prob"])[order], expected.given_prob[ids])
    np.testing.assert_array_equal(np.asarray(issues["predicted_label_prob"])[order], expected.predicted_prob[ids])
    assert summary["num_issues_estimated"] == expected.num_issues
    assert summary["num_label_issues"] == len(expected.issue_ids)
    assert summary["num_examples"] == len(expected.scores)
    np.testing.assert_allclose(summary["confident_thresholds"], expected.thresholds, rtol=0, atol=threshold_atol)
    np.testing.assert_array_equal(summary["examples_per_class"], expected.examples_per_class)
    if scores_table is not None:
        score_ids = np.asarray(scores_table["id"])
        order = np.argsort(score_ids)
        np.testing.assert_array_equal(score_ids[order], np.arange(len(expected.scores)))
        np.testing.assert_allclose(np.asarray(scores_table["label_quality"])[order], expected.scores, rtol=0, atol=atol)
        flagged = np.zeros(len(expected.scores), dtype=bool)
        flagged[expected.issue_ids] = True
        np.testing.assert_array_equal(np.asarray(scores_table["is_label_issue"])[order], flagged)
