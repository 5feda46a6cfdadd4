"""Full confident learning as pure numpy kernels: cleanlab 2.9's ``filter.find_label_issues``
for every ``filter_by``, its confident joint (raw and calibrated), the latent noise estimates
of ``count.estimate_py_and_noise_matrices_from_probabilities`` and the dataset health of
``cleanlab.dataset``.

No Beam in here. The functions are shaped for a pipeline whose passes each re-read the data:

- pass 1 (exists: ``kernels``): exact per-class thresholds and label counts;
  ``filter_thresholds`` turns them into the thresholds ``cleanlab.filter`` uses;
- pass 2, per batch: ``likely_true_labels`` then ``confident_joint_cells`` (a sparse count of
  at most one cell per row) and the row-local ``confident_learning_issues``; the sparse
  counts of all batches are summed with ``merge_sparse_counts``;
- once, on one worker, O(K^2) at most and O(stored cells) memory: ``plan_label_issues``
  (calibration, the prune-count matrix and how many rows each cell or class gives up),
  ``class_label_quality``, ``overlapping_classes``, ``overall_label_health_score`` and
  ``latent_noise_estimates``;
- selection passes, per batch: ``noise_rate_margins`` (prune_by_noise_rate) and the self
  confidence (prune_by_class) give each row a key and a value; ``value_bins``,
  ``keyed_histogram`` and ``lowest_per_key_cuts`` find each key's boundary bin, and
  ``lowest_per_key`` picks the rows at it, lowest by (value, id). Optionally a cheaper pass
  first (``runner_up_margins``, ``cell_indices``, ``noise_rate_bound_bins``: one histogram
  entry per row) bounds each cell's cut, so the margin passes skip rows that cannot reach it.

What cleanlab does, read from its source (cleanlab 2.9):

- Thresholds. ``count.get_confident_thresholds`` takes each class's mean self-confidence
  (``np.mean``, clipped below at 2e-6) but gives a class that never occurs as a label the
  threshold 2, so no row is ever confident in it. ``LabelInspector`` gives such a class 2e-6.
- The confident joint (``count.compute_confident_joint``). A row is confident in class j when
  ``p_j >= threshold_j - 1e-6``. With exactly one confident class, that is the row's likely
  true label; with two or more it is the row's argmax over *all* classes (the argmax need not
  be one of the confident classes); with none the row is not counted. The joint counts rows
  per (given label, likely true label); its diagonal is then raised to at least 1. The
  row indices it returns for ``confident_learning`` are the counted rows off the diagonal.
- Calibration (``count.calibrate_confident_joint``): each row is rescaled to its label count,
  the whole to N, and every row rounded to integers keeping its total
  (``internal.util.round_preserving_sum``). ``filter.find_label_issues`` and every health
  function use the calibrated joint; ``num_label_issues`` (the n of the ``low_*`` methods and
  of the health score) uses the raw off-diagonal rows.
- The prune-count matrix (``filter._keep_at_least_n_per_class``): transposed (true, given);
  where a given class's diagonal is below ``min_examples_per_class`` it is raised to it and the
  raise is taken evenly from that class's other non-zero cells (never below 0); the
  off-diagonal cells are then scaled by ``frac_noise`` and truncated to integers, the diagonal
  gaining what they lost (``_reduce_prune_counts``). ``num_to_remove_per_class`` then rebuilds
  the matrix from it (see ``prune_count_matrix``).
- Selection. A given class k with at most ``min_examples_per_class`` rows, or with a single row
  (``find_label_issues`` ignores a class's mask of length 1), gives up nothing.
  ``prune_by_class`` takes the ``count_k - diagonal_k`` rows labelled k with the lowest
  ``p_k``; ``prune_by_noise_rate`` takes, for every true class j != k, the ``P[j, k]`` rows
  labelled k with the largest ``p_j - p_k``, the union over j; ``both`` is the intersection.
  cleanlab's ``np.argsort`` is not stable, so ties at a boundary are broken arbitrarily there;
  here by the lower id.
- Agreeing rows. After selection, every method except ``low_self_confidence`` and
  ``low_normalized_margin`` drops rows where the model agrees with the label (``kernels.
  model_agrees``). So ``predicted_neq_given`` keeps exactly the rows that do not agree.
- ``low_*``: the n rows lowest by self-confidence or normalized margin, n = the number of
  counted off-diagonal rows where the model does not agree (``num_label_issues``'s default).

Exactness. Where cleanlab's result depends on the rounding of a float sum, the sum here runs in
the order numpy runs it on cleanlab's dense matrices (``pairwise_sum``, ``pairwise_line_sums``,
``sequential_line_sums``), so integer results, the health figures and the noise matrices equal
cleanlab's bit for bit. Where cleanlab's unstable ``np.argsort`` has to order equal values, the
answer depends on numpy's sort for the CPU: when rounding a row of the calibrated joint (cells of a
row holding equal counts tie; common), ``tie_break="numpy"`` sorts the same dense row the same
way, so it equals cleanlab on the same machine, and ``"class_index"`` is the same everywhere
(``round_rows_preserving_totals``); when selecting rows, ties go to the lower id. Probabilities
are compared and subtracted in float64 whatever their dtype, which is what cleanlab does on
float64 data (on float32 input cleanlab subtracts margins in float32).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Iterable, Optional, Sequence, Tuple

import numpy as np

from beam_labelissues import kernels

# The threshold count.get_confident_thresholds gives a class that never occurs as a label.
UNSEEN_CLASS_THRESHOLD = 2.0
# cleanlab.internal.constants
TINY_VALUE = 1e-100
EPSILON = 1e-6

FILTER_BY = (
    "prune_by_noise_rate",
    "prune_by_class",
    "both",
    "confident_learning",
    "predicted_neq_given",
    "low_normalized_margin",
    "low_self_confidence",
)
# Methods that select with the prune-count matrix (and accept frac_noise, num_to_remove_per_class).
PRUNING_FILTERS = ("prune_by_noise_rate", "prune_by_class", "both")
# Methods that decide each row on its own, given the thresholds.
ROW_LOCAL_FILTERS = ("confident_learning", "predicted_neq_given")
# Methods that rank by a score; the only ones that keep rows where the model agrees.
LOW_SCORE_FILTERS = {"low_self_confidence": "self_confidence", "low_normalized_margin": "normalized_margin"}

# numpy's pairwise summation (numpy/_core/src/umath/loops_utils.h.src): blocks of at most
# 128 elements are summed with 8 accumulators; longer runs split at half, rounded down to a
# multiple of 8. Vectors (and blocks of rows) up to this many elements are summed by numpy itself.
_DENSE_SUM_ELEMENTS = 1 << 22


# --------------------------------------------------------------------------------------------
# Sparse K x K matrices
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SparseSquare:
    """A K x K matrix as its stored cells: ``rows``, ``cols`` (int64) and ``values``, sorted by
    (row, col) without duplicates. Cells not stored are 0; stored cells may be 0.

    Orientations follow cleanlab: the confident joint and the calibrated joint are (given label,
    likely true label), the prune-count matrix (true, given).
    """

    num_classes: int
    rows: np.ndarray
    cols: np.ndarray
    values: np.ndarray

    @classmethod
    def from_cells(cls, num_classes: int, rows, cols, values) -> "SparseSquare":
        """Builds a matrix from cells in any order; duplicate cells must not occur."""
        rows = np.asarray(rows, dtype=np.int64)
        cols = np.asarray(cols, dtype=np.int64)
        values = np.asarray(values)
        order = np.argsort(rows * num_classes + cols, kind="stable")
        return cls(num_classes, rows[order], cols[order], values[order])

    @classmethod
    def from_codes(cls, num_classes: int, codes: np.ndarray, values: np.ndarray) -> "SparseSquare":
        """From sorted, unique cell codes ``row * K + col`` (as ``merge_sparse_counts`` gives)."""
        codes = np.asarray(codes, dtype=np.int64)
        return cls(num_classes, codes // num_classes, codes % num_classes, np.asarray(values))

    @property
    def codes(self) -> np.ndarray:
        """Each cell's position in the C-order ravel of the dense matrix."""
        return self.rows * self.num_classes + self.cols

    def to_dense(self) -> np.ndarray:
        dense = np.zeros((self.num_classes, self.num_classes), dtype=self.values.dtype)
        dense[self.rows, self.cols] = self.values
        return dense

    def with_values(self, values: np.ndarray) -> "SparseSquare":
        return SparseSquare(self.num_classes, self.rows, self.cols, np.asarray(values))

    def nonzero(self) -> "SparseSquare":
        keep = self.values != 0
        return SparseSquare(self.num_classes, self.rows[keep], self.cols[keep], self.values[keep])

    def diagonal(self) -> np.ndarray:
        """The dense diagonal, ``(K,)`` of the values' dtype."""
        diagonal = np.zeros(self.num_classes, dtype=self.values.dtype)
        on = self.rows == self.cols
        diagonal[self.rows[on]] = self.values[on]
        return diagonal

    def integer_row_sums(self) -> np.ndarray:
        """Row sums of an integer matrix, exact (int64)."""
        return _integer_bincount(self.rows, self.values, self.num_classes)

    def integer_col_sums(self) -> np.ndarray:
        """Column sums of an integer matrix, exact (int64)."""
        return _integer_bincount(self.cols, self.values, self.num_classes)


def _integer_bincount(keys: np.ndarray, values: np.ndarray, length: int) -> np.ndarray:
    """Exact per-key sums of int64 values (``np.add.at`` keeps integers, bincount would not)."""
    sums = np.zeros(length, dtype=np.int64)
    np.add.at(sums, keys, np.asarray(values, dtype=np.int64))
    return sums


# --------------------------------------------------------------------------------------------
# numpy's summation order, for sparse vectors
# --------------------------------------------------------------------------------------------


def _pairwise_split(length: int) -> int:
    half = length // 2
    return half - half % 8


def pairwise_sum(positions: np.ndarray, values: np.ndarray, length: int) -> float:
    """``np.sum`` of the float64 vector of ``length`` zeros holding ``values`` at ``positions``.

    ``positions`` are sorted and unique. ``np.sum`` of a contiguous float64 vector (a whole
    C-contiguous matrix, one row of it, or one column of an F-contiguous one) adds in a fixed
    tree that depends only on the length, so the zeros decide which values meet. The tree is
    followed down to pieces of at most 4M elements, which numpy itself sums densely; pieces
    without values add 0, which is exact. One or two values are added directly: with zeros
    around them every tree gives the same single rounding.
    """
    positions = np.asarray(positions, dtype=np.int64)
    values = np.asarray(values, dtype=np.float64)
    if len(values) == 0:
        return 0.0
    if len(values) <= 2:
        return float(values[0] + values[1]) if len(values) == 2 else float(values[0])
    if length <= _DENSE_SUM_ELEMENTS:
        dense = np.zeros(length, dtype=np.float64)
        dense[positions] = values
        return float(np.sum(dense))
    split = _pairwise_split(length)
    cut = int(np.searchsorted(positions, split))
    return pairwise_sum(positions[:cut], values[:cut], split) + pairwise_sum(
        positions[cut:] - split, values[cut:], length - split
    )


def pairwise_line_sums(lines: np.ndarray, positions: np.ndarray, values: np.ndarray,
                       num_lines: int, length: int) -> np.ndarray:
    """``pairwise_sum`` of many sparse vectors (``num_lines`` of ``length`` each) at once.

    Cells ``(line, position)`` are unique, in any order. This is ``np.sum(axis=1)`` of a
    C-contiguous matrix or ``np.sum(axis=0)`` of an F-contiguous one; lines with three or more
    values are written into dense blocks of at most 4M elements and summed by numpy.
    """
    lines = np.asarray(lines, dtype=np.int64)
    positions = np.asarray(positions, dtype=np.int64)
    values = np.asarray(values, dtype=np.float64)
    order = np.lexsort((positions, lines))
    lines, positions, values = lines[order], positions[order], values[order]
    # bincount adds in array order from 0: exact for lines holding one or two values.
    sums = np.bincount(lines, weights=values, minlength=num_lines).astype(np.float64)
    per_line = np.bincount(lines, minlength=num_lines)
    heavy = np.flatnonzero(per_line >= 3)
    if len(heavy) == 0:
        return sums
    if length > _DENSE_SUM_ELEMENTS:
        starts = np.searchsorted(lines, heavy, side="left")
        ends = np.searchsorted(lines, heavy, side="right")
        for line, start, end in zip(heavy.tolist(), starts.tolist(), ends.tolist()):
            sums[line] = pairwise_sum(positions[start:end], values[start:end], length)
        return sums
    block = max(1, _DENSE_SUM_ELEMENTS // length)
    for first in range(0, len(heavy), block):
        chosen = heavy[first:first + block]
        slot = np.full(num_lines, -1, dtype=np.int64)
        slot[chosen] = np.arange(len(chosen))
        in_block = slot[lines] >= 0
        dense = np.zeros((len(chosen), length), dtype=np.float64)
        dense[slot[lines[in_block]], positions[in_block]] = values[in_block]
        sums[chosen] = np.sum(dense, axis=1)
    return sums


def sequential_line_sums(lines: np.ndarray, values: np.ndarray, num_lines: int) -> np.ndarray:
    """Per-line sums added one value at a time in the given order, from 0.

    This is ``np.sum(axis=0)`` of a C-contiguous matrix when the cells come in row order (numpy
    adds row after row); the zeros left out add nothing.
    """
    return np.bincount(np.asarray(lines, dtype=np.int64), weights=np.asarray(values, dtype=np.float64),
                       minlength=num_lines).astype(np.float64)


# --------------------------------------------------------------------------------------------
# Pass 1 -> thresholds of cleanlab.filter
# --------------------------------------------------------------------------------------------


def filter_thresholds(thresholds: np.ndarray, label_counts: np.ndarray) -> np.ndarray:
    """The thresholds ``cleanlab.filter`` and ``cleanlab.count`` use, from the batched ones.

    The same exact per-class means, clipped at 2e-6, except that a class no row is labelled
    with gets ``UNSEEN_CLASS_THRESHOLD`` (2) instead of 2e-6: no probability reaches it, so no
    row is counted as truly belonging to that class.
    """
    out = np.array(thresholds, dtype=np.float64, copy=True)
    out[np.asarray(label_counts) == 0] = UNSEEN_CLASS_THRESHOLD
    return out


# --------------------------------------------------------------------------------------------
# Pass 2, per batch: the confident joint
# --------------------------------------------------------------------------------------------


def likely_true_labels(pred_probs: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Each row's likely true label as the confident joint counts it; -1 where none.

    ``pred_probs`` ``(n, K)`` of any float dtype, ``thresholds`` ``(K,)`` float64 (from
    ``filter_thresholds``). Returns int64 ``(n,)``: the only class whose probability reaches its
    threshold less 1e-6, or, when several do, the row's argmax over all classes (first index
    among equal maxima); -1 when no class does (cleanlab leaves such rows out of the joint).
    The comparison runs in float64, exact for float16/32 input.
    """
    cutoffs = np.asarray(thresholds, dtype=np.float64) - kernels.FLOATING_POINT_COMPARISON
    confident = pred_probs >= cutoffs
    num_confident = confident.sum(axis=1)
    likely = np.where(num_confident > 1, np.argmax(pred_probs, axis=1), np.argmax(confident, axis=1))
    likely = likely.astype(np.int64, copy=False)
    likely[num_confident == 0] = -1
    return likely


def confident_joint_cells(labels: np.ndarray, likely_true: np.ndarray, num_classes: int
                          ) -> Tuple[np.ndarray, np.ndarray]:
    """One batch's part of the raw confident joint, sparse.

    Returns ``(codes, counts)``: sorted unique int64 cell codes ``given * K + likely_true`` and
    int64 counts, over rows with a likely true label. A batch of n rows gives at most n cells,
    so the accumulator never costs K^2; sum batches with ``merge_sparse_counts``.
    """
    counted = likely_true >= 0
    codes = np.asarray(labels, dtype=np.int64)[counted] * num_classes + likely_true[counted]
    codes, counts = np.unique(codes, return_counts=True)
    return codes.astype(np.int64), counts.astype(np.int64)


def merge_sparse_counts(parts: Iterable[Tuple[np.ndarray, np.ndarray]]) -> Tuple[np.ndarray, np.ndarray]:
    """Sums sparse ``(codes, counts)`` pairs: sorted unique codes and int64 counts.

    Exact, associative and commutative: a CombineFn can add and merge in any order.
    """
    parts = [(np.asarray(c, dtype=np.int64), np.asarray(n, dtype=np.int64)) for c, n in parts]
    parts = [p for p in parts if len(p[0])]
    if not parts:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    codes = np.concatenate([c for c, _ in parts])
    counts = np.concatenate([n for _, n in parts])
    unique, inverse = np.unique(codes, return_inverse=True)
    sums = np.zeros(len(unique), dtype=np.int64)
    np.add.at(sums, inverse, counts)
    return unique, sums


def confident_learning_issues(labels: np.ndarray, likely_true: np.ndarray, model_agrees: np.ndarray
                              ) -> np.ndarray:
    """``filter_by='confident_learning'`` for one batch: bool ``(n,)``.

    True where the row is counted off the diagonal of the confident joint and the model does
    not agree with its label. Their total over the data is cleanlab's ``num_label_issues``
    (``off_diagonal``): the n of the ``low_*`` methods and of the health score.
    """
    return (likely_true >= 0) & (likely_true != labels) & ~np.asarray(model_agrees, dtype=bool)


def predicted_neq_given_issues(model_agrees: np.ndarray) -> np.ndarray:
    """``filter_by='predicted_neq_given'`` for one batch: rows where the model does not agree.

    cleanlab flags argmax != label, then drops rows where the model agrees; the agreeing rows
    include every argmax == label row, so what is left is exactly the disagreeing rows.
    """
    return ~np.asarray(model_agrees, dtype=bool)


def confident_joint_from_counts(codes: np.ndarray, counts: np.ndarray, num_classes: int) -> SparseSquare:
    """The summed cells as cleanlab's ``compute_confident_joint(calibrate=False)``: every
    diagonal cell raised to at least 1. int64, (given, likely true)."""
    raw = SparseSquare.from_codes(num_classes, codes, np.asarray(counts, dtype=np.int64))
    diagonal = np.maximum(raw.diagonal(), 1)
    off = raw.rows != raw.cols
    classes = np.arange(num_classes, dtype=np.int64)
    return SparseSquare.from_cells(
        num_classes,
        np.concatenate([raw.rows[off], classes]),
        np.concatenate([raw.cols[off], classes]),
        np.concatenate([raw.values[off], diagonal]).astype(np.int64),
    )


# --------------------------------------------------------------------------------------------
# Once, from the summed joint: calibration and the prune-count matrix
# --------------------------------------------------------------------------------------------


TIE_BREAKS = ("numpy", "class_index")


@dataclasses.dataclass(frozen=True)
class RoundedRows:
    """Integer matrix from ``round_rows_preserving_totals`` and how many rows had a tie."""

    matrix: SparseSquare
    rounding_ties: int


def round_rows_preserving_totals(matrix: SparseSquare, tie_break: str = "numpy") -> RoundedRows:
    """cleanlab's ``round_preserving_row_totals`` on a sparse float matrix.

    Each cell is rounded half to even. While a row's rounded float total (numpy's pairwise sum
    of the dense row) differs from the total of its rounded cells by d, the |d| cells (at most K)
    whose rounding lost the most (to go up) or gained the most (to go down) move by one.

    Which cells move when several have the same remainder is a tie, and ties are common: cells
    of one row holding equal counts get equal remainders. cleanlab orders the remainders of the
    dense row with ``np.argsort``, not stable, whose order of equal values depends on numpy's
    sort for the CPU (SIMD sorting networks where available). ``tie_break="numpy"`` makes that
    same call on the same dense row, so the result equals cleanlab's on the same machine;
    ``"class_index"`` moves the lower class first, the same everywhere. ``rounding_ties`` counts
    the rows where a tie straddled the cut, whichever rule decided it.

    Only rows that need adjusting are made dense, one at a time: O(K) memory. A row holding NaN
    or inf is not adjusted, as in cleanlab; its non-finite cells come out as 0 (cleanlab: the
    most negative int64; neither removes anything).
    """
    if tie_break not in TIE_BREAKS:
        raise ValueError(f"unknown tie_break {tie_break!r}; choose one of {', '.join(TIE_BREAKS)}")
    k = matrix.num_classes
    values = np.asarray(matrix.values, dtype=np.float64)
    rows, cols = matrix.rows, matrix.cols
    finite = np.isfinite(values)
    skip = np.zeros(k, dtype=bool)
    skip[rows[~finite]] = True
    rounded = np.where(finite, np.round(values), 0.0)
    float_totals = np.round(pairwise_line_sums(rows, cols, np.where(finite, values, 0.0), k, k))
    int_totals = np.round(np.bincount(rows, weights=rounded, minlength=k))
    todo = np.flatnonzero(~skip & (np.abs(float_totals - int_totals) > kernels.FLOATING_POINT_COMPARISON))
    out_rows, out_cols, out_values = [rows], [cols], [rounded]
    replaced = np.zeros(k, dtype=bool)
    replaced[todo] = True
    ties = 0
    starts = np.searchsorted(rows, todo, side="left")
    ends = np.searchsorted(rows, todo, side="right")
    for row, start, end in zip(todo.tolist(), starts.tolist(), ends.tolist()):
        dense = np.zeros(k, dtype=np.float64)
        dense[cols[start:end]] = values[start:end]
        adjusted, tied = _round_dense_row_preserving_total(dense, float(float_totals[row]), tie_break)
        ties += tied
        kept = np.flatnonzero(adjusted)
        out_rows.append(np.full(len(kept), row, dtype=np.int64))
        out_cols.append(kept.astype(np.int64))
        out_values.append(adjusted[kept])
    keep_first = ~replaced[rows]
    out_rows[0], out_cols[0], out_values[0] = rows[keep_first], cols[keep_first], rounded[keep_first]
    result = SparseSquare.from_cells(k, np.concatenate(out_rows), np.concatenate(out_cols),
                                     np.concatenate(out_values).astype(np.int64))
    return RoundedRows(result, ties)


def _round_dense_row_preserving_total(row: np.ndarray, target: float, tie_break: str) -> Tuple[np.ndarray, int]:
    """One dense row: rounded cells moved by one until they total ``target`` (the rounded float
    total). Returns the integer-valued float64 row and 1 if a tie straddled a cut, else 0."""
    ints = np.round(row)
    total = np.round(np.sum(ints))
    tied = 0
    while abs(total - target) > kernels.FLOATING_POINT_COMPARISON:
        gap = np.round(target - total)
        step = -1.0 if gap < 0 else 1.0
        changes = min(int(abs(gap)), len(row))
        remainders = row - ints
        if tie_break == "numpy":
            ascending = np.argsort(remainders)
            moving = ascending[::-1] if step > 0 else ascending
        else:
            moving = np.lexsort((np.arange(len(row)), -step * remainders))
        if changes < len(row) and remainders[moving[changes - 1]] == remainders[moving[changes]]:
            tied = 1
        ints[moving[:changes]] += step
        total = np.round(np.sum(ints))
    return ints, tied


@dataclasses.dataclass(frozen=True)
class CalibratedJoint:
    """``count.compute_confident_joint(calibrate=True)``: int64 (given, likely true), each row
    summing to its label count and the whole to N (up to cleanlab's own rounding)."""

    matrix: SparseSquare
    rounding_ties: int


def calibrate_confident_joint(confident_joint: SparseSquare, label_counts: np.ndarray,
                              tie_break: str = "numpy") -> CalibratedJoint:
    """cleanlab's ``calibrate_confident_joint`` on the sparse joint from ``confident_joint_from_counts``.

    Each cell is divided by its row total (clipped at 1e-100) and multiplied by the row's label
    count; every cell is then divided by the sum of all cells (numpy's pairwise order over the
    C-order K x K matrix, zeros included) and multiplied by N; rows are rounded keeping their
    totals (``round_rows_preserving_totals``, which explains ``tie_break``). Label counts are
    ``(K,)`` integers (0 for unseen classes).
    """
    k = confident_joint.num_classes
    label_counts = np.asarray(label_counts, dtype=np.int64)
    row_totals = confident_joint.integer_row_sums()
    divisor = np.clip(row_totals.astype(np.float64), TINY_VALUE, None)
    rows = confident_joint.rows
    scaled = confident_joint.values / divisor[rows] * label_counts[rows]
    total = pairwise_sum(confident_joint.codes, scaled, k * k)
    scaled = scaled / max(total, TINY_VALUE) * np.float64(label_counts.sum())
    rounded = round_rows_preserving_totals(confident_joint.with_values(scaled), tie_break)
    return CalibratedJoint(rounded.matrix.nonzero(), rounded.rounding_ties)


@dataclasses.dataclass(frozen=True)
class PruneCounts:
    """cleanlab's prune-count matrix, (true, given), int64, and the rounding ties met."""

    matrix: SparseSquare
    rounding_ties: int


def prune_count_matrix(
    calibrated_joint: SparseSquare,
    label_counts: np.ndarray,
    *,
    frac_noise: float = 1.0,
    min_examples_per_class: int = 1,
    num_to_remove_per_class: Optional[Sequence[int]] = None,
    tie_break: str = "numpy",
) -> PruneCounts:
    """The matrix ``filter.find_label_issues`` prunes with, (true j, given k), int64.

    ``_keep_at_least_n_per_class``, in the calibrated joint's terms: for a given class k whose
    diagonal is below n = ``min_examples_per_class``, the diagonal becomes n and each of the
    row's other cells loses ``(n - diagonal) / max(nonzero cells of the row - 1, 1)``, floored
    at 0. ``_reduce_prune_counts``: the off-diagonal cells are multiplied by ``frac_noise`` and
    truncated; the diagonal becomes ``diagonal + sum(cell - cell * frac_noise)``, summed in
    numpy's pairwise order down the column of the (F-contiguous) transposed matrix, truncated.
    The final ``round_preserving_row_totals`` of integers changes nothing.

    ``num_to_remove_per_class`` (r): with P that matrix, ``psy[i, j] = P[i, j] / rowsum(P)[j]``
    (cleanlab divides by the row total of the *column's* class), ``noise[i] = rowsum(psy)[i] -
    psy[i, i]``, cells ``psy[i, j] * r[i] / noise[i]``, diagonal ``count_i - r_i``, rows rounded
    keeping totals. A zero row total of P makes every off-diagonal cell NaN and a zero
    ``noise[i]`` makes row i's NaN; NaN cells remove nothing, as in cleanlab.
    """
    k = calibrated_joint.num_classes
    label_counts = np.asarray(label_counts, dtype=np.int64)
    joint = calibrated_joint.nonzero()
    rows, cols, values = joint.rows, joint.cols, joint.values.astype(np.int64)
    diagonal = joint.diagonal().astype(np.int64)
    raised = np.maximum(diagonal, min_examples_per_class)
    increase = raised - diagonal
    spread = np.maximum(np.bincount(rows, minlength=k) - 1.0, 1.0)
    off = rows != cols
    o_rows, o_cols = rows[off], cols[off]
    kept = values[off] - increase[o_rows] / spread[o_rows]
    kept[kept < 0] = 0.0
    reduced = kept * frac_noise
    moved_to_diagonal = pairwise_line_sums(o_rows, o_cols, kept - reduced, k, k)
    new_diagonal = (raised + moved_to_diagonal).astype(np.int64)
    classes = np.arange(k, dtype=np.int64)
    # (true, given) = (col, row) of the calibrated joint.
    prune = SparseSquare.from_cells(
        k,
        np.concatenate([o_cols, classes]),
        np.concatenate([o_rows, classes]),
        np.concatenate([reduced.astype(np.int64), new_diagonal]),
    ).nonzero()
    ties = 0
    if num_to_remove_per_class is not None:
        rebuilt = _rebuild_for_num_to_remove(prune, label_counts, np.asarray(num_to_remove_per_class),
                                             tie_break)
        prune, ties = rebuilt.matrix.nonzero(), rebuilt.rounding_ties
    return PruneCounts(prune, ties)


def _rebuild_for_num_to_remove(prune: SparseSquare, label_counts: np.ndarray,
                               num_to_remove: np.ndarray, tie_break: str) -> RoundedRows:
    """The ``num_to_remove_per_class`` matrix (see ``prune_count_matrix``), (true, given).

    Where cleanlab's cells are NaN (a zero row total anywhere, or a zero noise total in a row)
    the row keeps only its integer diagonal: a row holding NaN is not adjusted by the rounding,
    and NaN cells remove nothing.
    """
    k = prune.num_classes
    row_totals = prune.integer_row_sums()
    classes = np.arange(k, dtype=np.int64)
    diagonal_cells = (classes, classes, (label_counts - num_to_remove).astype(np.float64))
    if (row_totals == 0).any():
        # Every column's cells divide by that zero total: NaN or inf in every row's noise total.
        return round_rows_preserving_totals(SparseSquare(k, *diagonal_cells), tie_break)
    rows, cols = prune.rows, prune.cols
    psy = prune.values / row_totals[cols]
    noise = pairwise_line_sums(rows, cols, psy, k, k) - SparseSquare(k, rows, cols, psy).diagonal()
    keep = (rows != cols) & (noise[rows] != 0)
    cells = psy[keep] * num_to_remove[rows[keep]] / noise[rows[keep]]
    rebuilt = SparseSquare.from_cells(
        k,
        np.concatenate([rows[keep], diagonal_cells[0]]),
        np.concatenate([cols[keep], diagonal_cells[1]]),
        np.concatenate([cells, diagonal_cells[2]]),
    )
    return round_rows_preserving_totals(rebuilt, tie_break)


# --------------------------------------------------------------------------------------------
# The plan: what each selection pass takes
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class LabelIssuePlan:
    """Everything the selection passes need, from the summed joint: O(stored cells) in size.

    - ``noise_rate_given``, ``noise_rate_true``, ``noise_rate_take``: int64 ``(m,)``, sorted by
      (given, true): prune_by_noise_rate takes, of the rows labelled ``given``, the ``take``
      with the largest ``p_true - p_given`` (ties: lower id), for each listed cell.
    - ``class_take``: int64 ``(K,)``: prune_by_class takes, of the rows labelled k, the
      ``class_take[k]`` with the lowest ``p_k`` (ties: lower id).
    - ``num_low_score_issues``: the n of the ``low_*`` methods (and of the health score).
    - ``drops_agreeing_rows``: whether rows where the model agrees are removed afterwards.
    """

    filter_by: str
    num_classes: int
    label_counts: np.ndarray
    confident_joint: SparseSquare
    calibrated_joint: CalibratedJoint
    prune_counts: Optional[PruneCounts]
    noise_rate_given: np.ndarray
    noise_rate_true: np.ndarray
    noise_rate_take: np.ndarray
    class_take: np.ndarray
    num_low_score_issues: int
    drops_agreeing_rows: bool

    @property
    def rounding_ties(self) -> int:
        """Rows where cleanlab's unstable sort, not the data, decided a rounding."""
        return self.calibrated_joint.rounding_ties + (self.prune_counts.rounding_ties if self.prune_counts else 0)


def eligible_classes(label_counts: np.ndarray, min_examples_per_class: int) -> np.ndarray:
    """bool ``(K,)``: classes that may give up rows to prune_by_class / prune_by_noise_rate.

    More than ``min_examples_per_class`` rows, and more than one: ``find_label_issues`` only
    writes back a class's mask when it has more than one element.
    """
    label_counts = np.asarray(label_counts, dtype=np.int64)
    return (label_counts > min_examples_per_class) & (label_counts > 1)


def plan_label_issues(
    cell_codes: np.ndarray,
    cell_counts: np.ndarray,
    label_counts: np.ndarray,
    num_confident_learning_issues: int,
    *,
    filter_by: str = "prune_by_noise_rate",
    frac_noise: float = 1.0,
    num_to_remove_per_class: Optional[Sequence[int]] = None,
    min_examples_per_class: int = 1,
    tie_break: str = "numpy",
) -> LabelIssuePlan:
    """How many rows each cell / class gives up, from the summed pass-2 counts.

    ``cell_codes``/``cell_counts``: the merged ``confident_joint_cells``; ``label_counts``:
    ``(K,)`` rows per given label; ``num_confident_learning_issues``: the summed count of
    ``confident_learning_issues``. Arguments as ``filter.find_label_issues``; like it, this
    refuses ``num_to_remove_per_class`` for the non-pruning methods. ``tie_break``: see
    ``round_rows_preserving_totals``.
    """
    if filter_by not in FILTER_BY:
        raise ValueError(f"unknown filter_by {filter_by!r}; choose one of {', '.join(FILTER_BY)}")
    if num_to_remove_per_class is not None and filter_by not in PRUNING_FILTERS:
        raise ValueError(f"num_to_remove_per_class is only supported for {', '.join(PRUNING_FILTERS)}")
    label_counts = np.asarray(label_counts, dtype=np.int64)
    k = len(label_counts)
    joint = confident_joint_from_counts(cell_codes, cell_counts, k)
    calibrated = calibrate_confident_joint(joint, label_counts, tie_break)
    empty = np.zeros(0, dtype=np.int64)
    given, true, take = empty, empty, empty
    class_take = np.zeros(k, dtype=np.int64)
    prune = None
    if filter_by in PRUNING_FILTERS:
        prune = prune_count_matrix(calibrated.matrix, label_counts, frac_noise=frac_noise,
                                   min_examples_per_class=min_examples_per_class,
                                   num_to_remove_per_class=num_to_remove_per_class, tie_break=tie_break)
        eligible = eligible_classes(label_counts, min_examples_per_class)
        matrix = prune.matrix
        if filter_by in ("prune_by_noise_rate", "both"):
            cells = (matrix.rows != matrix.cols) & (matrix.values > 0) & eligible[matrix.cols]
            # (true, given) -> sorted by (given, true)
            order = np.lexsort((matrix.rows[cells], matrix.cols[cells]))
            given = matrix.cols[cells][order]
            true = matrix.rows[cells][order]
            take = np.minimum(matrix.values[cells][order], label_counts[given]).astype(np.int64)
        if filter_by in ("prune_by_class", "both"):
            class_take = np.clip(label_counts - matrix.diagonal(), 0, label_counts)
            class_take[~eligible] = 0
    return LabelIssuePlan(
        filter_by=filter_by,
        num_classes=k,
        label_counts=label_counts,
        confident_joint=joint,
        calibrated_joint=calibrated,
        prune_counts=prune,
        noise_rate_given=given,
        noise_rate_true=true,
        noise_rate_take=take,
        class_take=class_take.astype(np.int64),
        num_low_score_issues=int(num_confident_learning_issues) if filter_by in LOW_SCORE_FILTERS else 0,
        drops_agreeing_rows=filter_by not in LOW_SCORE_FILTERS,
    )


# --------------------------------------------------------------------------------------------
# Dataset health and latent estimates, from the calibrated joint only
# --------------------------------------------------------------------------------------------


def joint_distribution(calibrated_joint: SparseSquare) -> SparseSquare:
    """``count.estimate_joint``: the calibrated joint over its (integer) total, float64."""
    total = float(calibrated_joint.values.astype(np.int64).sum())
    return calibrated_joint.with_values(calibrated_joint.values / max(total, TINY_VALUE))


@dataclasses.dataclass(frozen=True)
class ClassLabelQuality:
    """``dataset.rank_classes_by_label_quality``, one entry per class, sorted by
    ``label_quality_score`` ascending, ties by class index (cleanlab: unstable sort)."""

    class_index: np.ndarray            # int64
    label_issues: np.ndarray           # int64, round(p(given=k, true!=k) * N)
    inverse_label_issues: np.ndarray   # int64, round(p(given!=k, true=k) * N)
    label_noise: np.ndarray            # float64, p(true!=k | given=k)
    inverse_label_noise: np.ndarray    # float64, p(given!=k | true=k)
    label_quality_score: np.ndarray    # float64, 1 - label_noise


def class_label_quality(calibrated_joint: SparseSquare, num_examples: int) -> ClassLabelQuality:
    """Per-class noise from the joint distribution (rows summed as numpy sums a C-contiguous
    row, columns one row after another, as ``joint.sum(axis=0)`` does)."""
    k = calibrated_joint.num_classes
    joint = joint_distribution(calibrated_joint)
    diagonal = joint.diagonal().astype(np.float64)
    given_totals = pairwise_line_sums(joint.rows, joint.cols, joint.values, k, k)
    true_totals = sequential_line_sums(joint.cols, joint.values, k)
    given_noise = given_totals - diagonal
    true_noise = true_totals - diagonal
    label_noise = given_noise / np.clip(given_totals, EPSILON, None)
    inverse_noise = true_noise / np.clip(true_totals, EPSILON, None)
    quality = 1 - label_noise
    order = np.lexsort((np.arange(k), quality))
    return ClassLabelQuality(
        class_index=order.astype(np.int64),
        label_issues=np.round(given_noise * num_examples).astype(np.int64)[order],
        inverse_label_issues=np.round(true_noise * num_examples).astype(np.int64)[order],
        label_noise=label_noise[order],
        inverse_label_noise=inverse_noise[order],
        label_quality_score=quality[order],
    )


@dataclasses.dataclass(frozen=True)
class OverlappingClasses:
    """``dataset.find_overlapping_classes`` (symmetric), only the pairs with a non-zero joint
    probability, sorted by it descending, ties by (a, b) (cleanlab lists every pair a < b,
    zeros included, and sorts unstably)."""

    class_index_a: np.ndarray              # int64, a < b
    class_index_b: np.ndarray              # int64
    num_overlapping_examples: np.ndarray   # int64, round(joint_probability * N)
    joint_probability: np.ndarray          # float64, p(given=a, true=b) + p(given=b, true=a)


def overlapping_classes(calibrated_joint: SparseSquare, num_examples: int) -> OverlappingClasses:
    k = calibrated_joint.num_classes
    joint = joint_distribution(calibrated_joint)
    off = (joint.rows != joint.cols) & (joint.values != 0)
    low = np.minimum(joint.rows[off], joint.cols[off])
    high = np.maximum(joint.rows[off], joint.cols[off])
    pairs, inverse = np.unique(low * k + high, return_inverse=True)
    # At most two cells per pair: one addition, the same in either order.
    probability = np.bincount(inverse, weights=joint.values[off], minlength=len(pairs))
    a, b = pairs // k, pairs % k
    order = np.lexsort((b, a, -probability))
    return OverlappingClasses(
        class_index_a=a[order].astype(np.int64),
        class_index_b=b[order].astype(np.int64),
        num_overlapping_examples=np.round(probability[order] * num_examples).astype(np.int64),
        joint_probability=probability[order],
    )


def overall_label_health_score(num_confident_learning_issues: int, num_examples: int) -> float:
    """``dataset.overall_label_health_score`` given labels and pred_probs: 1 - n / N, with n the
    ``off_diagonal`` number of label issues (the summed ``confident_learning_issues``)."""
    return float(1 - np.int64(num_confident_learning_issues) / num_examples)


def _clip_probability_vector(values: np.ndarray, low: float, high: float, new_sum: float) -> np.ndarray:
    """cleanlab's ``clip_values``: clip, then rescale to ``new_sum`` (numpy's 1-D sum)."""
    clipped = np.clip(values, low, high)
    return clipped * new_sum / np.clip(np.sum(clipped), TINY_VALUE, None)


def _clip_noise_rates(matrix: SparseSquare, f_contiguous: bool) -> SparseSquare:
    """cleanlab's ``clip_noise_rates``: off-diagonal rates into [0, 0.9999], columns rescaled to
    sum to 1. The column sums run as numpy runs them on the dense matrix's layout: down each
    column pairwise when F-contiguous, row after row when C-contiguous."""
    k = matrix.num_classes
    on = matrix.rows == matrix.cols
    values = np.where(on, matrix.values, np.clip(matrix.values, 0, 0.9999))
    if f_contiguous:
        totals = pairwise_line_sums(matrix.cols, matrix.rows, values, k, k)
    else:
        totals = sequential_line_sums(matrix.cols, values, k)
    return matrix.with_values(values / np.clip(totals, TINY_VALUE, None)[matrix.cols])


def _py_from_counts(ps: np.ndarray, noise: SparseSquare, inverse: SparseSquare) -> np.ndarray:
    """cleanlab's ``compute_py`` with ``py_method='cnt'``."""
    py = inverse.diagonal() / np.clip(noise.diagonal(), TINY_VALUE, None) * ps
    return _clip_probability_vector(py, kernels.CLIPPING_LOWER_BOUND, 1.0, 1.0)


def _inverse_from_noise(py: np.ndarray, noise: SparseSquare, ps: np.ndarray) -> SparseSquare:
    """cleanlab's ``compute_inv_noise_matrix``: (noise * py)^T / ps, F-contiguous."""
    joint = noise.values * py[noise.cols]
    inverse = SparseSquare.from_cells(noise.num_classes, noise.cols, noise.rows,
                                      joint / np.clip(ps, TINY_VALUE, None)[noise.rows])
    return _clip_noise_rates(inverse, f_contiguous=True)


def _noise_from_inverse(ps: np.ndarray, inverse: SparseSquare, py: np.ndarray) -> SparseSquare:
    """cleanlab's ``compute_noise_matrix_from_inverse``: (inverse * ps)^T / py, C-contiguous."""
    joint = inverse.values * ps[inverse.cols]
    noise = SparseSquare.from_cells(inverse.num_classes, inverse.cols, inverse.rows,
                                    joint / np.clip(py, TINY_VALUE, None)[inverse.rows])
    return _clip_noise_rates(noise, f_contiguous=False)


@dataclasses.dataclass(frozen=True)
class LatentNoiseEstimates:
    """``count.estimate_py_and_noise_matrices_from_probabilities`` (defaults): ``py`` ``(K,)``
    p(true=k); ``noise_matrix`` p(given=i | true=j) at (i, j); ``inverse_noise_matrix``
    p(true=i | given=j) at (i, j); float64, sparse where the joint is."""

    py: np.ndarray
    noise_matrix: SparseSquare
    inverse_noise_matrix: SparseSquare


def latent_noise_estimates(calibrated_joint: SparseSquare, label_counts: np.ndarray,
                           *, noise_iterations: int = 3, inverse_iterations: int = 5) -> LatentNoiseEstimates:
    """``count.estimate_latent`` with ``py_method='cnt'`` and ``converge_latent_estimates=True``.

    noise = joint / column totals, inverse = joint^T / row totals; py from their diagonals;
    both clipped; then 3 rounds of (5 rounds of inverse-from-noise and py) and noise-from-inverse;
    finally py clipped to [1e-5, 1] summing to 1 and both matrices clipped again. Every sum
    follows the dense layout cleanlab's expressions give (see ``_clip_noise_rates``).
    """
    label_counts = np.asarray(label_counts, dtype=np.int64)
    k = calibrated_joint.num_classes
    joint = calibrated_joint.nonzero()
    classes = np.arange(k, dtype=np.int64)
    # Store the whole diagonal so diagonal() and clipping see every class.
    values = joint.values.astype(np.float64)
    missing = np.setdiff1d(classes, joint.rows[joint.rows == joint.cols])
    joint = SparseSquare.from_cells(k, np.concatenate([joint.rows, missing]),
                                    np.concatenate([joint.cols, missing]),
                                    np.concatenate([values, np.zeros(len(missing))]))
    ps = label_counts / float(label_counts.sum())
    given_totals = joint.integer_row_sums().astype(np.float64)
    true_totals = joint.integer_col_sums().astype(np.float64)
    noise = joint.with_values(joint.values / np.clip(true_totals, TINY_VALUE, None)[joint.cols])
    inverse = SparseSquare.from_cells(k, joint.cols, joint.rows,
                                      joint.values / np.clip(given_totals, TINY_VALUE, None)[joint.rows])
    py = _py_from_counts(ps, noise, inverse)
    noise = _clip_noise_rates(noise, f_contiguous=False)
    inverse = _clip_noise_rates(inverse, f_contiguous=True)
    for _ in range(noise_iterations):
        for _ in range(inverse_iterations):
            inverse = _inverse_from_noise(py, noise, ps)
            py = _py_from_counts(ps, noise, inverse)
        noise = _noise_from_inverse(ps, inverse, py)
    py = _clip_probability_vector(py, 1e-5, 1.0, 1.0)
    noise = _clip_noise_rates(noise, f_contiguous=False)
    inverse = _clip_noise_rates(inverse, f_contiguous=True)
    return LatentNoiseEstimates(py, noise, inverse)


# --------------------------------------------------------------------------------------------
# Selection passes, per batch
# --------------------------------------------------------------------------------------------


def noise_rate_margins(labels: np.ndarray, pred_probs: np.ndarray, cell_given: np.ndarray,
                       cell_true: np.ndarray, *, upper_bins: Optional[np.ndarray] = None,
                       cell_bound_bins: Optional[np.ndarray] = None
                       ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each row's margin in every cell of its given class that has rows to give up.

    ``cell_given``/``cell_true``: the plan's ``noise_rate_given``/``noise_rate_true`` (sorted by
    given). Returns ``(row, cell, margin)``: int64 row index in the batch, int64 index into the
    plan's cells, float64 ``p_true - p_given`` (subtracted in float64). A row labelled k appears
    once per listed cell of k; rows of classes without cells do not appear.

    With ``upper_bins`` (per row, ``value_bins`` of ``-upper`` from ``runner_up_margins``) and
    ``cell_bound_bins`` (from ``noise_rate_bound_bins``, same bins), a (row, cell) pair is left
    out when the row's largest possible margin cannot reach the cell's cut, and a row whose
    largest margin reaches no cut of its class is not expanded at all: the work follows the
    rows near a cut instead of N times the cells per class.
    """
    labels = np.asarray(labels, dtype=np.int64)
    row_ids = np.arange(len(labels), dtype=np.int64)
    starts = np.searchsorted(cell_given, labels, side="left")
    ends = np.searchsorted(cell_given, labels, side="right")
    if upper_bins is not None:
        # The loosest bound of each class's cells: a row beyond it is in none of them.
        loosest = np.full(int(labels.max(initial=0)) + 1, -1, dtype=np.int64)
        known = cell_given < len(loosest)
        np.maximum.at(loosest, np.asarray(cell_given)[known], np.asarray(cell_bound_bins)[known])
        reachable = (ends > starts) & (upper_bins <= loosest[labels])
        row_ids, starts, ends = row_ids[reachable], starts[reachable], ends[reachable]
    degree = ends - starts
    total = int(degree.sum())
    rows = np.repeat(row_ids, degree)
    offsets = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(degree) - degree, degree)
    cells = np.repeat(starts, degree).astype(np.int64) + offsets
    if upper_bins is not None:
        can_reach = upper_bins[rows] <= cell_bound_bins[cells]
        rows, cells = rows[can_reach], cells[can_reach]
    true_prob = pred_probs[rows, cell_true[cells]].astype(np.float64)
    given_prob = pred_probs[rows, labels[rows]].astype(np.float64)
    return rows, cells, true_prob - given_prob


def runner_up_margins(labels: np.ndarray, pred_probs: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Each row's runner-up class (the largest probability other than the label's, first index
    among equal ones) and its ``upper`` margin ``p_runner_up - p_label`` in float64.

    ``upper`` bounds the row's margin in every cell of its class, and equals it in the cell
    (label, runner-up): so the ``take``-th largest ``upper`` among rows labelled k whose runner-up
    is j is a lower bound on cell (k, j)'s cut (``noise_rate_bound_bins``).
    """
    labels = np.asarray(labels, dtype=np.int64)
    rows = np.arange(len(labels))
    others = np.array(pred_probs, dtype=np.float64, copy=True)
    given = others[rows, labels].copy()
    others[rows, labels] = -np.inf
    runner_up = np.argmax(others, axis=1).astype(np.int64)
    return runner_up, others[rows, runner_up] - given


def cell_indices(cell_given: np.ndarray, cell_true: np.ndarray, num_classes: int,
                 given: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Index of each (given, true) pair among the plan's noise-rate cells, -1 where not listed."""
    cell_codes = np.asarray(cell_given, dtype=np.int64) * num_classes + np.asarray(cell_true, dtype=np.int64)
    wanted = np.asarray(given, dtype=np.int64) * num_classes + np.asarray(true, dtype=np.int64)
    if len(cell_codes) == 0:
        return np.full(len(wanted), -1, dtype=np.int64)
    where = np.minimum(np.searchsorted(cell_codes, wanted), len(cell_codes) - 1)
    return np.where(cell_codes[where] == wanted, where, -1).astype(np.int64)


def noise_rate_bound_bins(codes: np.ndarray, counts: np.ndarray, num_bins: int, take: np.ndarray) -> np.ndarray:
    """Per noise-rate cell, the last bin (of ``-upper``) a row can be in and still be taken.

    From a merged ``keyed_histogram`` keyed by cell index (``cell_indices`` of (label, runner-up))
    of ``value_bins(-upper)``. Where a cell's runner-up rows number at least ``take``, the bin of
    their ``take``-th lowest ``-upper``; otherwise the last bin (no bound). A row's negated margin
    in a cell is at least its ``-upper``, and bins are monotone, so a row whose ``-upper`` bin is
    above the bound cannot be among the cell's ``take`` lowest negated margins.
    """
    take = np.asarray(take, dtype=np.int64)
    cut, _ = lowest_per_key_cuts(codes, counts, num_bins, take)
    rows_per_cell = np.bincount(np.asarray(codes, dtype=np.int64) // num_bins,
                                weights=np.asarray(counts, dtype=np.float64), minlength=len(take))
    return np.where((rows_per_cell >= take) & (take > 0), cut, num_bins - 1).astype(np.int64)


def value_bins(values: np.ndarray, low: float, high: float, num_bins: int) -> np.ndarray:
    """Maps values in [low, high] to ``num_bins`` bins, non-decreasing in the value (each step
    is a rounded monotone operation), outliers clipped to the end bins. Margins use [-1, 1]."""
    scaled = (np.asarray(values, dtype=np.float64) - low) / (high - low) * num_bins
    bins = np.floor(scaled)
    return np.clip(np.nan_to_num(bins, nan=0.0), 0, num_bins - 1).astype(np.int64)


def keyed_histogram(keys: np.ndarray, bins: np.ndarray, num_bins: int) -> Tuple[np.ndarray, np.ndarray]:
    """Sparse per-key histogram: sorted codes ``key * num_bins + bin`` and int64 counts.
    Sum batches with ``merge_sparse_counts``."""
    codes = np.asarray(keys, dtype=np.int64) * num_bins + np.asarray(bins, dtype=np.int64)
    codes, counts = np.unique(codes, return_counts=True)
    return codes.astype(np.int64), counts.astype(np.int64)


def lowest_per_key_cuts(codes: np.ndarray, counts: np.ndarray, num_bins: int, take: np.ndarray
                        ) -> Tuple[np.ndarray, np.ndarray]:
    """Each key's boundary bin for taking its ``take[key]`` lowest rows.

    From the merged ``keyed_histogram``. Returns int64 ``(cut_bin, take_at_cut)`` per key: every
    row of the key in a bin below ``cut_bin`` is taken, ``take_at_cut`` rows of those in
    ``cut_bin`` are (the lowest by value, id), none above. ``cut_bin`` is -1 where the key takes
    nothing; where the key holds fewer rows than ``take`` it is its last bin and all are taken.
    """
    take = np.asarray(take, dtype=np.int64)
    num_keys = len(take)
    cut_bin = np.full(num_keys, -1, dtype=np.int64)
    take_at_cut = np.zeros(num_keys, dtype=np.int64)
    codes = np.asarray(codes, dtype=np.int64)
    counts = np.asarray(counts, dtype=np.int64)
    if len(codes) == 0:
        return cut_bin, take_at_cut
    keys, bins = codes // num_bins, codes % num_bins
    cumulative = np.cumsum(counts)
    key_start = np.searchsorted(keys, keys, side="left")
    before_key = np.where(key_start > 0, cumulative[np.maximum(key_start - 1, 0)], 0)
    within = cumulative - before_key            # rows of the key in bins <= this one
    below = within - counts                     # rows of the key in bins < this one
    wanted = take[keys]
    reached = (within >= wanted) & (below < wanted) & (wanted > 0)
    cut_bin[keys[reached]] = bins[reached]
    take_at_cut[keys[reached]] = wanted[reached] - below[reached]
    # Keys with fewer rows than they take: all of them, the last bin at the cut.
    last = np.r_[keys[1:] != keys[:-1], True]
    short = last & (within < wanted) & (wanted > 0)
    cut_bin[keys[short]] = bins[short]
    take_at_cut[keys[short]] = counts[short]
    return cut_bin, take_at_cut


def lowest_per_key(keys: np.ndarray, values: np.ndarray, ids: np.ndarray, take: np.ndarray) -> np.ndarray:
    """Indices of, for each key, its ``take[key]`` rows lowest by (value, id), in that order.

    ``keys`` int ``(n,)`` index ``take``; ``values`` float ``(n,)``; ``ids`` ints or strings.
    cleanlab picks among equal values with an unstable argsort; the lower id goes first here, so
    the answer does not depend on batching. For the largest values, pass their negation.
    """
    keys = np.asarray(keys, dtype=np.int64)
    if len(keys) == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(ids, kind="stable")
    order = order[np.argsort(np.asarray(values)[order], kind="stable")]
    order = order[np.argsort(keys[order], kind="stable")]
    sorted_keys = keys[order]
    rank = np.arange(len(order)) - np.searchsorted(sorted_keys, sorted_keys, side="left")
    return order[rank < np.asarray(take, dtype=np.int64)[sorted_keys]]


# --------------------------------------------------------------------------------------------
# The pipeline's passes, per batch: the kernels above fused for speed
# --------------------------------------------------------------------------------------------
#
# The pipeline (beam_labelissues/full_method.py) keys every selection alike: a noise-rate cell's
# rows by the cell's index (values: the negated margin ``p_given - p_true``, lowest first), a
# class's rows by ``m + class`` (m noise-rate cells; values: ``p_given``) and the ``low_*`` rows
# by key 0 (values: the score). A keyed histogram of the values gives each key's cut bin
# (``lowest_per_key_cuts``); rows below it are taken for sure, the rows in it compete by
# (value, id) for the cut bin's share. Values are compared in float64 and binned by
# ``selection_bins``, one monotone map used by every pass, so a row's bin and its rank agree.

# Counters of one keyed histogram (keys x bins): at most 4M (a cut pass's accumulator, 32 MiB);
# aim for 512k, which stays in the CPU's cache when a batch's entries are counted, unless that
# leaves fewer than 64 bins per key.
MAX_HISTOGRAM_COUNTERS = 1 << 22
TARGET_HISTOGRAM_COUNTERS = 1 << 19
MIN_TARGET_BINS_PER_KEY = 64
MAX_BINS_PER_KEY = 1 << 16
# Noise-rate cells are found through a dense K x K table up to this K (4 MiB of int32).
_MAX_DENSE_CELL_TABLE_CLASSES = 1024


def bins_per_key(num_keys: int) -> int:
    """Bins per key of a keyed histogram over ``num_keys`` keys: at most 65,536; keys x bins
    near ``TARGET_HISTOGRAM_COUNTERS``, or 64 bins per key where that is more, and never above
    ``MAX_HISTOGRAM_COUNTERS`` (at least one bin: then each key's rows all meet at its cut).
    Fewer bins only put more rows in a cut bin, where they are compared exactly."""
    num_keys = max(int(num_keys), 1)
    wanted = max(TARGET_HISTOGRAM_COUNTERS // num_keys, min(MIN_TARGET_BINS_PER_KEY, MAX_HISTOGRAM_COUNTERS // num_keys))
    return int(max(1, min(MAX_BINS_PER_KEY, wanted)))


def selection_bins(values: np.ndarray, low: float, high: float, num_bins: int) -> np.ndarray:
    """int64 bins of float64 ``values`` over [low, high], outliers clipped to the end bins.

    Each step (subtract, multiply by a positive constant, floor) is a rounded monotone
    operation, so the bins never decrease as the values grow: every row in a lower bin has a
    lower value than every row in a higher one.
    """
    scaled = np.subtract(values, low, dtype=np.float64)
    scaled *= num_bins / (high - low)
    np.floor(scaled, out=scaled)
    np.clip(scaled, 0, num_bins - 1, out=scaled)
    return scaled.astype(np.int64)


def exact_cutoffs(thresholds: np.ndarray, dtype) -> np.ndarray:
    """The cutoffs ``threshold - 1e-6`` in the probabilities' own dtype, rounded up: for a value
    p of that dtype, ``p >= cutoff`` (compared in the dtype) exactly when ``float64(p) >=
    threshold - 1e-6``, since the rounded-up cutoff is the least value of the dtype that reaches
    the float64 one. Comparing float32 input this way avoids a float64 copy of the batch."""
    cutoffs = np.asarray(thresholds, dtype=np.float64) - kernels.FLOATING_POINT_COMPARISON
    dtype = np.dtype(dtype)
    if dtype == np.float64 or dtype.kind != "f":
        return cutoffs
    narrowed = cutoffs.astype(dtype)
    short = narrowed.astype(np.float64) < cutoffs
    narrowed[short] = np.nextafter(narrowed[short], dtype.type(np.inf))
    return narrowed


@functools.lru_cache(maxsize=None)
def _bit_tables() -> Tuple[np.ndarray, np.ndarray]:
    """(set bits, lowest set bit or -1) of every 16-bit mask, made once per process.

    Built whole before it is cached: the SDK harness calls this from several threads at
    once (Flink with --parallelism 3 met a half-set pair of globals here)."""
    codes = np.arange(1 << 16, dtype=np.uint32)
    bits = ((codes[:, None] >> np.arange(16, dtype=np.uint32)) & 1).astype(np.uint8)
    popcount = bits.sum(axis=1).astype(np.int64)
    lowest = np.where(popcount > 0, np.argmax(bits, axis=1), -1).astype(np.int64)
    return popcount, lowest


def confident_counts_and_first(confident: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Per row of a bool ``(n, K)`` matrix: how many entries are True, and the first True one.

    With K <= 16 each row becomes a bit mask (one small integer matrix product) read from two
    tables; numpy's reductions along short rows cost several times more.
    """
    n, k = confident.shape
    if k <= 16 and n:
        weights = (1 << np.arange(k)).astype(np.uint16)
        masks = np.ascontiguousarray(confident).view(np.uint8) @ weights
        popcount, lowest = _bit_tables()
        return popcount[masks], lowest[masks]
    return np.count_nonzero(confident, axis=1).astype(np.int64), np.argmax(confident, axis=1).astype(np.int64)


@dataclasses.dataclass(frozen=True)
class JointOfBatch:
    """One batch's share of the confident joint: ``likely_true`` per row (-1: not counted), the
    sparse cells (sorted unique codes ``given * K + likely``, int64 counts), the rows counted
    off the diagonal (``off_diagonal``, bool) and how many of those the model does not agree
    with (``num_confident_learning_issues``)."""

    likely_true: np.ndarray
    codes: np.ndarray
    counts: np.ndarray
    off_diagonal: np.ndarray
    num_confident_learning_issues: int


def confident_joint_of_batch(labels: np.ndarray, pred_probs: np.ndarray, cutoffs: np.ndarray,
                             num_classes: int) -> JointOfBatch:
    """``likely_true_labels``, ``confident_joint_cells`` and the ``confident_learning_issues``
    count of one batch in one go. ``cutoffs`` from ``exact_cutoffs`` (``filter_thresholds``,
    the probabilities' dtype). The argmax over all classes is taken only for rows confident in
    two or more classes, and the model's agreement only for the rows counted off the diagonal.
    """
    labels = np.asarray(labels, dtype=np.int64)
    confident = pred_probs >= cutoffs
    num_confident, likely = confident_counts_and_first(confident)
    several = np.flatnonzero(num_confident >= 2)
    if len(several):
        likely[several] = np.argmax(pred_probs[several], axis=1)
    likely[num_confident == 0] = -1
    counted = likely >= 0
    codes = labels[counted] * num_classes + likely[counted]
    if num_classes * num_classes <= 4 * max(len(codes), 1):
        dense = np.bincount(codes, minlength=num_classes * num_classes)
        codes = np.flatnonzero(dense).astype(np.int64)
        counts = dense[codes].astype(np.int64)
    else:
        codes, counts = np.unique(codes, return_counts=True)
        codes, counts = codes.astype(np.int64), counts.astype(np.int64)
    off_diagonal = counted & (likely != labels)
    rows = np.flatnonzero(off_diagonal)
    agrees = kernels.predictions(labels[rows], pred_probs[rows])[2]
    return JointOfBatch(likely, codes, counts, off_diagonal, int(np.count_nonzero(~agrees)))


@dataclasses.dataclass(frozen=True)
class NoiseRateCells:
    """The plan's noise-rate cells in the form the passes use: ``given``, ``true`` (int64, sorted
    by (given, true)) and, for K up to 1,024 where rows have many cells each, ``table``: the K x
    K int32 index of each (given, true) cell, ``len(given)`` where there is none."""

    num_classes: int
    given: np.ndarray
    true: np.ndarray
    table: Optional[np.ndarray]

    @classmethod
    def of_plan(cls, plan: "LabelIssuePlan") -> "NoiseRateCells":
        k, m = plan.num_classes, len(plan.noise_rate_given)
        table = None
        # Dense: every row computes K values; sparse: only its class's cells, at a few times the
        # cost per value. Dense while a row's class has on average more than K / 8 cells.
        if k <= _MAX_DENSE_CELL_TABLE_CLASSES and m * 8 >= k * k:
            table = np.full((k, k), m, dtype=np.int32)
            table[plan.noise_rate_given, plan.noise_rate_true] = np.arange(m, dtype=np.int32)
        return cls(k, plan.noise_rate_given, plan.noise_rate_true, table)

    def __len__(self) -> int:
        return len(self.given)


def arithmetic_dtype(pred_probs: np.ndarray) -> np.dtype:
    """The dtype a selection pass computes values in: float64 for float64 input, else float32.

    For float16 or float32 probabilities, float32 arithmetic is exact enough: a margin
    ``fl32(p_k - p_j)`` is always ``fl32`` of the float64 margin ``fl64(p_k - p_j)`` cleanlab
    computes (the exact difference of two float32 values is representable in float64 unless one
    is below 2^-28 of the other, and then both roundings land on the larger one), so a bin
    computed from it is a non-decreasing function of the float64 value: equal float64 values
    share a bin, and a lower one never lands in a higher bin. The float64 value itself is
    computed only for the few rows at a cut bin, where rows are compared.
    """
    return np.dtype(np.float64) if np.asarray(pred_probs).dtype == np.float64 else np.dtype(np.float32)


# Elements per piece when a batch is cut into pieces that stay in the CPU's cache.
_PIECE_ELEMENTS = 1 << 16


def _dense_noise_rate_pieces(labels: np.ndarray, pred_probs: np.ndarray, cells: NoiseRateCells, num_bins: int):
    """Per piece of rows: (first row, keys (rows, K) int32, bins (rows, K) int32), the dense way."""
    dtype = arithmetic_dtype(pred_probs)
    k = cells.num_classes
    step = max(1, _PIECE_ELEMENTS // k)
    for start in range(0, len(labels), step):
        piece_labels = labels[start:start + step]
        probs = np.asarray(pred_probs[start:start + step], dtype=dtype)
        given_prob = probs[np.arange(len(piece_labels)), piece_labels]
        values = given_prob[:, None] - probs  # the negated margins p_given - p_true
        values += dtype.type(1.0)  # over [-1, 1]: shift by 1, scale by num_bins / 2
        values *= dtype.type(num_bins / 2.0)
        # Truncation is the floor from 0 up; the few values below 0 (a tolerated probability
        # past 1) truncate to 0 or below and are clipped to bin 0 with the rest.
        bins = values.astype(np.int32)
        np.clip(bins, 0, num_bins - 1, out=bins)
        yield start, cells.table[piece_labels], bins


def noise_rate_values(labels: np.ndarray, pred_probs: np.ndarray, rows: np.ndarray, true: np.ndarray) -> np.ndarray:
    """The float64 negated margins ``p_given - p_true`` of the (row, true class) pairs given,
    exactly as cleanlab computes ``p_true - p_given`` on float64 data, negated."""
    rows = np.asarray(rows, dtype=np.int64)
    probs_true = np.asarray(pred_probs[rows, true], dtype=np.float64)
    probs_given = np.asarray(pred_probs[rows, np.asarray(labels)[rows]], dtype=np.float64)
    return probs_given - probs_true


def noise_rate_histogram_codes(labels: np.ndarray, pred_probs: np.ndarray, cells: NoiseRateCells,
                               num_bins: int) -> np.ndarray:
    """Codes ``key * num_bins + bin`` of the batch's noise-rate values, for a keyed histogram of
    ``len(cells) + 1`` keys (the last one collects the dense table's non-cells; ignore it)."""
    labels = np.asarray(labels, dtype=np.int64)
    if cells.table is not None:
        parts = []
        for _, keys, bins in _dense_noise_rate_pieces(labels, pred_probs, cells, num_bins):
            codes = keys.astype(np.int64)
            codes *= num_bins
            codes += bins
            parts.append(codes.ravel())
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    rows, keys, margins = noise_rate_margins(labels, pred_probs, cells.given, cells.true)
    return keys * num_bins + selection_bins(-margins, -1.0, 1.0, num_bins)


@dataclasses.dataclass(frozen=True)
class KeyedCut:
    """Each key's cut (``lowest_per_key_cuts``): rows of key k in bins below ``cut_bin[k]`` are
    taken, ``take_at_cut[k]`` of those in it are (lowest by value, then id), none above."""

    num_bins: int
    cut_bin: np.ndarray
    take_at_cut: np.ndarray

    @classmethod
    def from_histogram(cls, codes: np.ndarray, counts: np.ndarray, num_bins: int, take: np.ndarray) -> "KeyedCut":
        cut_bin, take_at_cut = lowest_per_key_cuts(codes, counts, num_bins, np.asarray(take, dtype=np.int64))
        return cls(num_bins, cut_bin, take_at_cut)


@dataclasses.dataclass(frozen=True)
class BoundaryEntries:
    """Rows at a key's cut bin: batch row, key, float64 value, and how many of the key's cut-bin
    rows are taken (``take``, per entry)."""

    rows: np.ndarray
    keys: np.ndarray
    values: np.ndarray
    take: np.ndarray

    @staticmethod
    def concatenate(parts: Sequence["BoundaryEntries"]) -> "BoundaryEntries":
        return BoundaryEntries(*(np.concatenate([getattr(p, f.name) for p in parts])
                                 for f in dataclasses.fields(BoundaryEntries)))


def _empty_entries() -> BoundaryEntries:
    empty = np.zeros(0, dtype=np.int64)
    return BoundaryEntries(empty, empty, np.zeros(0, dtype=np.float64), empty)


def select_noise_rate(labels: np.ndarray, pred_probs: np.ndarray, cells: NoiseRateCells,
                      cut: "KeyedCut") -> Tuple[np.ndarray, "BoundaryEntries"]:
    """prune_by_noise_rate for one batch: bool ``(n,)``, True where a row is taken for sure in
    at least one cell of its class, and the entries at a cell's cut bin (keys: cell indices)."""
    labels = np.asarray(labels, dtype=np.int64)
    n = len(labels)
    cut_bins = np.append(cut.cut_bin, -1).astype(np.int32)  # the non-cells key never takes
    if cells.table is not None:
        sure = np.zeros(n, dtype=bool)
        weights = np.ones(cells.num_classes, dtype=np.uint16)
        at_rows, at_true = [], []
        for start, keys, bins in _dense_noise_rate_pieces(labels, pred_probs, cells, cut.num_bins):
            key_cuts = cut_bins[keys]
            below = bins < key_cuts
            sure[start:start + len(keys)] = (below.view(np.uint8) @ weights) > 0
            rows, true = np.nonzero(bins == key_cuts)
            at_rows.append(rows + start)
            at_true.append(true)
        rows = np.concatenate(at_rows).astype(np.int64) if at_rows else np.zeros(0, dtype=np.int64)
        true = np.concatenate(at_true).astype(np.int64) if at_true else np.zeros(0, dtype=np.int64)
        keys = cells.table[labels[rows], true].astype(np.int64)
        values = noise_rate_values(labels, pred_probs, rows, true)
        return sure, BoundaryEntries(rows, keys, values, cut.take_at_cut[keys])
    rows, keys, margins = noise_rate_margins(labels, pred_probs, cells.given, cells.true)
    bins = selection_bins(-margins, -1.0, 1.0, cut.num_bins)
    key_cuts = cut_bins[keys]
    sure = np.zeros(n, dtype=bool)
    sure[rows[bins < key_cuts]] = True
    at = np.flatnonzero(bins == key_cuts)
    at_keys = keys[at]
    return sure, BoundaryEntries(rows[at], at_keys, -margins[at], cut.take_at_cut[at_keys])


def select_lowest_by_key(keys: np.ndarray, values: np.ndarray, cut: KeyedCut, low: float = 0.0,
                         high: float = 1.0) -> Tuple[np.ndarray, BoundaryEntries]:
    """A selection with one key per row (a class, or the single key of ``low_*``): bool ``(n,)``
    of rows taken for sure, and the rows at their key's cut bin."""
    keys = np.asarray(keys, dtype=np.int64)
    bins = selection_bins(values, low, high, cut.num_bins)
    cut_bins = cut.cut_bin[keys]
    at = np.flatnonzero(bins == cut_bins)
    at_keys = keys[at]
    entries = BoundaryEntries(at, at_keys, np.asarray(values, dtype=np.float64)[at], cut.take_at_cut[at_keys])
    return bins < cut_bins, entries


@dataclasses.dataclass(frozen=True)
class SelectionPlan:
    """What a selection pass needs, from the plan and the cuts: small, a side input.

    ``noise_rate`` and ``noise_rate_cut`` (prune_by_noise_rate, both): the cells, keys
    ``0 .. m-1``. ``class_cut`` (prune_by_class, both): keys are the classes, offset by m in the
    candidates. ``low_score_cut`` (low_*): one key, the score of ``low_score_method``.
    """

    filter_by: str
    num_classes: int
    noise_rate: Optional[NoiseRateCells] = None
    noise_rate_cut: Optional[KeyedCut] = None
    class_cut: Optional[KeyedCut] = None
    low_score_cut: Optional[KeyedCut] = None

    @property
    def low_score_method(self) -> Optional[str]:
        return LOW_SCORE_FILTERS.get(self.filter_by)

    @property
    def drops_agreeing_rows(self) -> bool:
        return self.filter_by not in LOW_SCORE_FILTERS

    @property
    def class_key_offset(self) -> int:
        return len(self.noise_rate) if self.noise_rate is not None else 0

    def select(self, labels: np.ndarray, pred_probs: np.ndarray) -> Tuple[np.ndarray, BoundaryEntries, np.ndarray]:
        """One batch: bool ``(n,)`` of the rows selected for sure (for ``both``, in both
        selections), the entries at a cut bin (keys in the candidates' key space) and each
        entry's flags (``SelectionCandidates``: 1 = the row is taken for sure by noise rate,
        2 = by class). Rows where the model agrees are still here; they are dropped later."""
        labels = np.asarray(labels, dtype=np.int64)
        n = len(labels)
        parts = []
        noise_rate_sure = class_sure = None
        if self.noise_rate_cut is not None:
            noise_rate_sure, entries = select_noise_rate(labels, pred_probs, self.noise_rate, self.noise_rate_cut)
            parts.append(entries)
        if self.class_cut is not None:
            confidence = kernels.self_confidence(labels, pred_probs)
            class_sure, entries = select_lowest_by_key(labels, confidence, self.class_cut)
            parts.append(dataclasses.replace(entries, keys=entries.keys + self.class_key_offset))
        if self.low_score_cut is not None:
            scores = kernels.label_quality_scores(labels, pred_probs, None, method=self.low_score_method)
            sure, entries = select_lowest_by_key(np.zeros(n, dtype=np.int64), scores, self.low_score_cut)
            parts.append(entries)
        elif noise_rate_sure is not None and class_sure is not None:
            sure = noise_rate_sure & class_sure
        else:
            sure = noise_rate_sure if noise_rate_sure is not None else class_sure
        entries = BoundaryEntries.concatenate(parts) if parts else _empty_entries()
        flags = np.zeros(len(entries.rows), dtype=np.uint8)
        if noise_rate_sure is not None:
            flags |= noise_rate_sure[entries.rows].astype(np.uint8)
        if class_sure is not None:
            flags |= class_sure[entries.rows].astype(np.uint8) << 1
        return sure, entries, flags

    def resolve(self, keys: np.ndarray, ids: np.ndarray, flags: np.ndarray) -> np.ndarray:
        """Which of the entries every key's cut bin chose (keys, ids, flags) are selected rows not
        already taken for sure: indices of one entry per such row, in id order.

        prune_by_noise_rate: a row chosen in a cell and taken for sure in no cell. both: a row
        in the noise-rate selection (for sure, or chosen in a cell) and in the class selection
        (for sure, or chosen), unless for sure in both. Others: every chosen row.
        """
        keys = np.asarray(keys, dtype=np.int64)
        flags = np.asarray(flags, dtype=np.uint8)
        noise_rate_sure = (flags & 1) != 0
        class_sure = (flags & 2) != 0
        if self.filter_by == "prune_by_noise_rate":
            keep = ~noise_rate_sure
        elif self.filter_by == "both":
            by_noise_rate = keys < self.class_key_offset
            in_noise_rate = noise_rate_sure | np.isin(ids, ids[by_noise_rate])
            in_class = class_sure | np.isin(ids, ids[~by_noise_rate])
            keep = in_noise_rate & in_class & ~(noise_rate_sure & class_sure)
        else:
            keep = np.ones(len(keys), dtype=bool)
        kept = np.flatnonzero(keep)
        if len(kept) == 0:
            return kept
        _, first = np.unique(ids[kept], return_index=True)
        return kept[first]
