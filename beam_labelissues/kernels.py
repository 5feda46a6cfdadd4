"""Pure numpy kernels of confident learning, one function per step.

No Beam in here: every function takes numpy arrays for one batch of examples and
returns numpy arrays or plain Python values, so each step can be tested directly
against cleanlab and read without knowing Beam.

Shapes: ``labels`` is ``(n,)`` of integers in ``[0, K)``; ``pred_probs`` is
``(n, K)`` of float16/32/64. Arithmetic that cleanlab does in float64 is done in
float64 here whatever the input dtype, so float16/32 inputs give exactly the
answer cleanlab gives on the same values cast to float64.
"""

from __future__ import annotations

from typing import List, Sequence, Tuple

import numpy as np

# The constants of cleanlab.internal.constants (cleanlab 2.9).
FLOATING_POINT_COMPARISON = 1e-6
CLIPPING_LOWER_BOUND = 1e-6
CONFIDENT_THRESHOLDS_LOWER_BOUND = 2 * FLOATING_POINT_COMPARISON

METHODS = ("self_confidence", "normalized_margin", "confidence_weighted_entropy")
ESTIMATION_METHODS = ("off_diagonal", "off_diagonal_calibrated")

# Exact sums: every float64 is an integer multiple of 2**-_EXACT_SCALE_BITS, so a
# per-class sum kept as a Python int in those units is exact, associative and
# independent of the order, batch size or worker count that fed it.
_EXACT_SCALE_BITS = 1126
_HALF_MANTISSA_BITS = 26
# bincount adds float64 weights below 2**27; it stays exact below 2**53 in total.
_MAX_ROWS_PER_EXACT_CHUNK = 1 << 25


def self_confidence(labels: np.ndarray, pred_probs: np.ndarray) -> np.ndarray:
    """Returns ``pred_probs[i, labels[i]]`` as float64: the given label's probability."""
    return pred_probs[np.arange(len(labels)), labels].astype(np.float64, copy=False)


def class_index_dtype(num_classes: int) -> np.dtype:
    """The narrowest unsigned dtype that holds every class index."""
    for dtype in (np.uint8, np.uint16, np.uint32):
        if num_classes <= np.iinfo(dtype).max + 1:
            return np.dtype(dtype)
    return np.dtype(np.int64)


def narrow_integers(values: np.ndarray) -> np.ndarray:
    """Integer values as int32 when they fit (ids of fewer than 2**31 rows); others unchanged."""
    if values.dtype.kind not in "iu" or values.dtype.itemsize <= 4 or len(values) == 0:
        return values
    limits = np.iinfo(np.int32)
    if values.min() >= limits.min and values.max() <= limits.max:
        return values.astype(np.int32)
    return values


def predicted_labels(pred_probs: np.ndarray) -> np.ndarray:
    """Returns the model's class, numpy's argmax (the first index among equal maxima)."""
    return np.argmax(pred_probs, axis=1).astype(np.int64, copy=False)


def exact_sums_by_class(labels: np.ndarray, values: np.ndarray, num_classes: int) -> List[int]:
    """Returns, for each class k, the exact sum of ``values[labels == k]``.

    Each sum is a Python int in units of ``2**-1126`` (see ``exact_to_float``).
    Floating point sums depend on the order of addition, so thresholds computed
    from them would change in the last bit with batch size or worker count;
    these do not.
    """
    totals = [0] * num_classes
    values = np.asarray(values, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    for start in range(0, len(values), _MAX_ROWS_PER_EXACT_CHUNK):
        chunk = values[start:start + _MAX_ROWS_PER_EXACT_CHUNK]
        chunk_labels = labels[start:start + _MAX_ROWS_PER_EXACT_CHUNK]
        nonzero = chunk != 0
        if not nonzero.all():
            chunk, chunk_labels = chunk[nonzero], chunk_labels[nonzero]
        if len(chunk) == 0:
            continue
        mantissa, exponent = np.frexp(chunk)
        whole = np.ldexp(mantissa, 53)  # an integer below 2**53 in magnitude, exact
        high = np.floor(np.ldexp(whole, -_HALF_MANTISSA_BITS))
        low = whole - np.ldexp(high, _HALF_MANTISSA_BITS)
        exp_min = int(exponent.min())
        num_exponents = int(exponent.max()) - exp_min + 1
        keys = chunk_labels * num_exponents + (exponent - exp_min)
        size = num_classes * num_exponents
        high_sums = np.bincount(keys, weights=high, minlength=size)
        low_sums = np.bincount(keys, weights=low, minlength=size)
        for key in np.flatnonzero((high_sums != 0) | (low_sums != 0)).tolist():
            k, e = divmod(key, num_exponents)
            part = (int(high_sums[key]) << _HALF_MANTISSA_BITS) + int(low_sums[key])
            # value = part * 2**(exp - 53); in units of 2**-1126 shift by exp - 53 + 1126.
            totals[k] += part << (e + exp_min - 53 + _EXACT_SCALE_BITS)
    return totals


def exact_to_float(total: int, count: int) -> float:
    """Returns ``total / count`` correctly rounded, for a sum from ``exact_sums_by_class``."""
    return total / (count << _EXACT_SCALE_BITS)


def confident_thresholds(class_sums: Sequence[int], class_counts: np.ndarray) -> np.ndarray:
    """Returns each class's mean self-confidence, clipped below at 2e-6.

    A class that never occurs as a given label gets 2e-6, as in cleanlab's
    ``LabelInspector`` (``cleanlab.count.get_confident_thresholds`` would give 2).
    """
    thresholds = np.array(
        [exact_to_float(s, int(c)) if c > 0 else 0.0 for s, c in zip(class_sums, class_counts)],
        dtype=np.float64,
    )
    return np.clip(thresholds, CONFIDENT_THRESHOLDS_LOWER_BOUND, None)


def adjust_pred_probs(pred_probs: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Subtracts the thresholds, shifts by their max and renormalises each row.

    The same operations in the same order as cleanlab's
    ``_subtract_confident_thresholds``, so results agree bit for bit.
    """
    adjusted = pred_probs - thresholds
    adjusted += thresholds.max()
    adjusted /= adjusted.sum(axis=1, keepdims=True)
    return adjusted


def normalized_margin(labels: np.ndarray, pred_probs: np.ndarray) -> np.ndarray:
    """``(p_label - max_{j != label} p_j + 1) / 2``: low when another class beats the label."""
    rows = np.arange(len(labels))
    given = pred_probs[rows, labels].astype(np.float64)
    others = np.array(pred_probs, dtype=np.float64, copy=True)
    others[rows, labels] = -np.inf
    return (given - others.max(axis=1) + 1) / 2


def normalized_entropy(pred_probs: np.ndarray) -> np.ndarray:
    """Entropy of each row divided by log(K), with ``0 * log 0 = 0``."""
    probs = np.asarray(pred_probs, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(probs > 0, probs * np.log(probs), 0.0)
    return -np.sum(terms, axis=1) / np.log(probs.shape[1])


def confidence_weighted_entropy(labels: np.ndarray, pred_probs: np.ndarray) -> np.ndarray:
    """cleanlab's confidence-weighted entropy score, on probabilities clipped into [0, 1].

    cleanlab raises for any probability outside [0, 1]; real predictions carry
    rounding (values like 1.00001), so the tolerated ones are clipped first.
    """
    probs = np.clip(np.asarray(pred_probs, dtype=np.float64), 0.0, 1.0)
    confidence = np.clip(self_confidence(labels, probs), CLIPPING_LOWER_BOUND, None)
    ratio = normalized_entropy(probs) / confidence
    return np.log(ratio + 1) / np.clip(ratio, CLIPPING_LOWER_BOUND, None)


def label_quality_scores(
    labels: np.ndarray,
    pred_probs: np.ndarray,
    thresholds: np.ndarray,
    method: str = "self_confidence",
    adjust: bool = False,
) -> np.ndarray:
    """Returns one float64 score per example in [0, 1]; low means the label is likely wrong.

    Mirrors cleanlab's ``rank._compute_label_quality_scores`` as
    ``LabelInspector.score_label_quality`` calls it.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if adjust:
        if method == "confidence_weighted_entropy":
            raise ValueError("adjust_pred_probs is not supported for confidence_weighted_entropy")
        pred_probs = adjust_pred_probs(pred_probs, thresholds)
    if method == "self_confidence":
        return self_confidence(labels, pred_probs)
    if method == "normalized_margin":
        return normalized_margin(labels, pred_probs)
    return confidence_weighted_entropy(labels, pred_probs)


def confident_predictions(
    top_prob: np.ndarray, predicted: np.ndarray, thresholds: np.ndarray
) -> np.ndarray:
    """True where the predicted class's probability ``top_prob`` clears its threshold less 1e-6."""
    return top_prob >= (thresholds - FLOATING_POINT_COMPARISON)[predicted]


def issue_count_stats(
    labels: np.ndarray, predicted: np.ndarray, confident: np.ndarray, num_classes: int
) -> np.ndarray:
    """Per given class, a ``(3, K)`` int64 array: prune_counts, normalization, class_counts.

    ``normalization[k]`` counts examples labelled k whose prediction is confident;
    ``prune_counts[k]`` those of them whose predicted class is not k. cleanlab's
    ``off_diagonal`` estimate is ``prune_counts.sum()``; ``off_diagonal_calibrated``
    rescales it per class.
    """
    # One bincount over (label, confident, disagrees) instead of three over masks.
    keys = labels * 4 + confident * 2 + (predicted != labels)
    counts = np.bincount(keys, minlength=4 * num_classes).reshape(num_classes, 4)
    return np.stack([counts[:, 3], counts[:, 2] + counts[:, 3], counts.sum(axis=1)]).astype(np.int64)


def estimate_num_issues(
    prune_counts: np.ndarray,
    normalization: np.ndarray,
    class_counts: np.ndarray,
    estimation_method: str = "off_diagonal",
) -> int:
    """cleanlab's ``LabelInspector.get_num_issues`` from the summed per-class counts."""
    if estimation_method == "off_diagonal":
        return int(np.sum(prune_counts))
    if estimation_method == "off_diagonal_calibrated":
        calibrated = (
            np.asarray(prune_counts, dtype=np.float64)
            * np.asarray(class_counts, dtype=np.float64)
            / np.clip(np.asarray(normalization, dtype=np.float64), CLIPPING_LOWER_BOUND, None)
        )
        return int(np.rint(np.sum(calibrated)))
    raise ValueError(
        f"unknown estimation_method {estimation_method!r}; "
        f"choose one of {', '.join(ESTIMATION_METHODS)}"
    )


def model_agrees(
    labels: np.ndarray, predicted: np.ndarray, top_prob: np.ndarray, label_prob: np.ndarray
) -> np.ndarray:
    """True where argmax of pred_probs, after adding 1e-6 to the label's entry, is the label.

    cleanlab's ``_reduce_issues`` drops these from the issues. Computed from each
    row's argmax, its probability and the label's probability, without copying
    rows: the bumped label wins outright when it exceeds the top probability, and
    on an exact tie when it comes first (numpy's argmax takes the first maximum).
    """
    bumped = np.asarray(label_prob, dtype=np.float64) + FLOATING_POINT_COMPARISON
    top = np.asarray(top_prob, dtype=np.float64)
    return (predicted == labels) | (bumped > top) | ((bumped == top) & (predicted > labels))


def predictions(labels: np.ndarray, pred_probs: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each row's predicted class, that class's probability, and ``model_agrees``."""
    predicted = predicted_labels(pred_probs)
    rows = np.arange(len(labels))
    top_prob = pred_probs[rows, predicted]
    return predicted, top_prob, model_agrees(labels, predicted, top_prob, pred_probs[rows, labels])


def score_bins(scores: np.ndarray, num_bins: int) -> np.ndarray:
    """Maps scores to histogram bins over [0, 1]; non-decreasing in the score.

    Because the map is monotone, the n lowest scores all lie in bins at or below
    the first bin where the cumulative count reaches n, which lets a pass drop
    every other row before ranking.
    """
    # Truncation equals floor for the scores >= 0; tolerated negatives land in bin 0 either way.
    bins = (np.asarray(scores, dtype=np.float64) * num_bins).astype(np.int64)
    return np.clip(bins, 0, num_bins - 1, out=bins)


def cutoff_bin(histogram: np.ndarray, num_issues: int) -> int:
    """The first bin where the cumulative count reaches ``num_issues``; -1 when it is 0."""
    cumulative = np.cumsum(histogram)
    if num_issues <= 0 or len(cumulative) == 0 or cumulative[-1] == 0:
        return -1
    return int(np.searchsorted(cumulative, min(num_issues, int(cumulative[-1])), side="left"))


def plan_rank_ranges(
    issue_histogram: np.ndarray, cutoff_bin: int, max_issues_per_range: int
) -> List[Tuple[int, int]]:
    """Splits the score bins below ``cutoff_bin`` into ranges of at most about
    ``max_issues_per_range`` issues each, so each range can be ranked on its own worker.

    Returns ``(first_bin, rank_offset)`` per range; the offset is the number of
    issues in the bins before it, all of which are issues (see ``cutoff_bin``).
    Every range holds at least one issue; a single bin heavier than the budget
    becomes a range of its own. The cutoff bin's issues join the last range.
    """
    ranges: List[Tuple[int, int]] = []
    in_range, offset = 0, 0
    counts = np.asarray(issue_histogram[: max(cutoff_bin, 0)], dtype=np.int64)
    for first_bin in np.flatnonzero(counts).tolist():
        count = int(counts[first_bin])
        if not ranges or in_range + count > max_issues_per_range:
            ranges.append((first_bin, offset))
            in_range = 0
        in_range += count
        offset += count
    return ranges


def order_by_score_then_id(scores: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Indices that sort by score ascending, ties by id ascending (ids may be ints or strings)."""
    if len(ids) < 2 or bool(np.all(ids[1:] >= ids[:-1])):
        return np.argsort(scores, kind="stable")  # already in id order: one stable sort does
    by_id = np.argsort(ids, kind="stable")
    return by_id[np.argsort(scores[by_id], kind="stable")]


def lowest_by_score_then_id(scores: np.ndarray, ids: np.ndarray, count: int) -> np.ndarray:
    """Indices of the ``count`` rows lowest by (score, id), in that order."""
    if count <= 0 or len(scores) == 0:
        return np.zeros(0, dtype=np.int64)
    if count < len(scores):
        kth = np.partition(scores, count - 1)[count - 1]
        keep = np.flatnonzero(scores <= kth)
    else:
        keep = np.arange(len(scores))
    order = keep[order_by_score_then_id(scores[keep], ids[keep])]
    return order[:count]
