"""cleanlab as the oracle of full confident learning: ``filter.find_label_issues`` for every
``filter_by``, the calibrated confident joint, the latent noise estimates and dataset health.

cleanlab runs on the values cast to float64, as the pipeline computes. Two things make an exact
comparison of issue sets impossible in places, and the oracle says where:

- cleanlab picks rows with ``np.argsort``, which is not stable (numpy's SIMD sorts order equal
  values differently by CPU). Where a selection's last taken value equals the first one left
  out, which of the tied rows cleanlab takes is arbitrary; ``ambiguous_rows`` lists them.
- cleanlab's thresholds are ``np.mean``s, the pipeline's exact means; they differ in the last
  bit, which matters only for a probability within a bit of ``threshold - 1e-6``.
  ``thresholds_decide_alike`` checks that no row is decided differently.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Dict, Optional, Sequence

import numpy as np
import pandas as pd
from cleanlab import count, dataset, filter as cl_filter
from cleanlab.filter import _keep_at_least_n_per_class

from beam_labelissues import kernels


def as_float64(labels: np.ndarray, pred_probs: np.ndarray):
    return np.asarray(labels).astype(np.int64), np.asarray(pred_probs, dtype=np.float64)


def thresholds_decide_alike(labels: np.ndarray, probs: np.ndarray, thresholds: np.ndarray) -> bool:
    """True when cleanlab's own thresholds make every row confident in the same classes."""
    theirs = count.get_confident_thresholds(labels, probs)
    np.testing.assert_allclose(theirs, thresholds, rtol=0, atol=1e-9)
    return bool(np.array_equal(probs >= theirs - 1e-6, probs >= thresholds - 1e-6))


def find_label_issues(labels, probs, filter_by: str, *, frac_noise: float = 1.0,
                      num_to_remove_per_class: Optional[Sequence[int]] = None,
                      min_examples_per_class: int = 1, confident_joint=None) -> np.ndarray:
    """cleanlab's mask, single process, its warnings (rare classes, NaN casts) silenced."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return np.asarray(cl_filter.find_label_issues(
            labels, probs, filter_by=filter_by, frac_noise=frac_noise,
            num_to_remove_per_class=num_to_remove_per_class,
            min_examples_per_class=min_examples_per_class, confident_joint=confident_joint, n_jobs=1,
        ))


def calibrated_joint(labels, probs) -> np.ndarray:
    return count.compute_confident_joint(labels, probs, calibrate=True)


def prune_count_matrix(calibrated: np.ndarray, *, frac_noise: float, min_examples_per_class: int) -> np.ndarray:
    """cleanlab's prune-count matrix before ``num_to_remove_per_class`` (true, given)."""
    return _keep_at_least_n_per_class(calibrated.T, min_examples_per_class, frac_noise=frac_noise)


def latent_estimates(labels, probs):
    """(py, noise_matrix, inverse_noise_matrix, calibrated confident joint)."""
    return count.estimate_py_and_noise_matrices_from_probabilities(labels, probs)


def health(labels, probs) -> Dict[str, object]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        summary = dataset.health_summary(labels, probs, verbose=False)
        summary["overall_label_health_score_direct"] = dataset.overall_label_health_score(
            labels, probs, verbose=False)
    return summary


def class_table_in_canonical_order(table: pd.DataFrame) -> pd.DataFrame:
    """cleanlab's class table sorted by (score, class index): its own sort is unstable."""
    order = np.lexsort((table["Class Index"].to_numpy(), table["Label Quality Score"].to_numpy()))
    return table.iloc[order].reset_index(drop=True)


def overlap_table_in_canonical_order(table: pd.DataFrame) -> pd.DataFrame:
    """cleanlab's non-zero overlaps sorted by (probability desc, a, b)."""
    nonzero = table[table["Joint Probability"] != 0]
    order = np.lexsort((nonzero["Class Index B"].to_numpy(), nonzero["Class Index A"].to_numpy(),
                        -nonzero["Joint Probability"].to_numpy()))
    return nonzero.iloc[order].reset_index(drop=True)


@dataclasses.dataclass
class Ambiguity:
    """Rows cleanlab's unstable sort may take or leave, and in how many selections."""

    rows: np.ndarray
    tied_selections: int


def _tied_at_boundary(values: np.ndarray, row_ids: np.ndarray, take: int):
    """Rows sharing the value at the cut of the ``take`` lowest, when the cut splits them."""
    if take <= 0 or take >= len(values):
        return None
    ordered = np.sort(values)
    if ordered[take - 1] != ordered[take]:
        return None
    return row_ids[values == ordered[take - 1]]


def ambiguous_rows(labels, probs, plan) -> Ambiguity:
    """Rows whose selection by cleanlab depends on how its argsort orders equal values.

    Uses the plan's cells and counts (checked against cleanlab's separately): for each selection
    (a noise-rate cell, a class, the global low-score cut) whose boundary splits equal values,
    every row holding that value.
    """
    tied = []
    rows_of = {k: np.flatnonzero(labels == k) for k in np.unique(labels)}
    if plan.filter_by in ("prune_by_noise_rate", "both"):
        for k, j, take in zip(plan.noise_rate_given.tolist(), plan.noise_rate_true.tolist(),
                              plan.noise_rate_take.tolist()):
            rows = rows_of[k]
            found = _tied_at_boundary(-(probs[rows, j] - probs[rows, k]), rows, take)
            if found is not None:
                tied.append(found)
    if plan.filter_by in ("prune_by_class", "both"):
        for k in np.flatnonzero(plan.class_take).tolist():
            rows = rows_of[k]
            found = _tied_at_boundary(probs[rows, k], rows, int(plan.class_take[k]))
            if found is not None:
                tied.append(found)
    if plan.filter_by in ("low_self_confidence", "low_normalized_margin"):
        method = plan.filter_by[len("low_"):]
        scores = kernels.label_quality_scores(labels, probs, None, method=method)
        found = _tied_at_boundary(scores, np.arange(len(labels)), plan.num_low_score_issues)
        if found is not None:
            tied.append(found)
    rows = np.unique(np.concatenate(tied)) if tied else np.zeros(0, dtype=np.int64)
    return Ambiguity(rows, len(tied))
