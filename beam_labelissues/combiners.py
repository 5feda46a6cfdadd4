"""CombineFns for the three global aggregates of confident learning.

Each is exact (integer counts, exact sums), associative and free of side inputs,
so runners can pre-combine per bundle and the result never depends on how the
data was split: the same answer on one worker or a thousand.
"""

from __future__ import annotations

import dataclasses
from typing import Any, List, Optional, Sequence

import apache_beam as beam
import numpy as np

from beam_labelissues import confident_joint, kernels, sampling
from beam_labelissues.coders import BatchCoder
from beam_labelissues.batches import (
    ExampleBatch,
    HistogramEntries,
    IssueCandidates,
    JointCounts,
    ScoredBatch,
    SelectionCandidates,
)

# Fine histogram of scores used to cut the candidates before ranking.
NUM_SCORE_BINS = 1 << 16
# The histogram kept in the summary (and drawn in the report): a coarsening of the fine one.
NUM_SUMMARY_BINS = 128


@dataclasses.dataclass
class ThresholdStats:
    """Result of the thresholds pass: per-class thresholds and label counts.

    ``sampled_examples_per_class`` counts the rows the thresholds were computed
    from: every row unless a ``sample_fraction`` below 1 was asked for.
    """

    thresholds: np.ndarray
    examples_per_class: np.ndarray
    num_examples: int
    sampled_examples_per_class: Optional[np.ndarray] = None


class ConfidentThresholdsFn(beam.CombineFn):
    """Per-class mean self-confidence over valid ``ExampleBatch`` elements.

    With ``sample_fraction`` below 1 the means are over the rows whose id is in
    the deterministic sample of ``beam_labelissues.sampling`` (the class counts
    stay over every row). The accumulator is ``[exact per-class sums over the
    sample, per-class counts in the sample, per-class counts]``.
    """

    def __init__(self, num_classes: int, sample_fraction: float = 1.0):
        self._num_classes = num_classes
        self._sample_fraction = sampling.check_fraction(sample_fraction)

    def create_accumulator(self):
        k = self._num_classes
        return [[0] * k, np.zeros(k, dtype=np.int64), np.zeros(k, dtype=np.int64)]

    def add_input(self, accumulator, batch: ExampleBatch):
        if len(batch) == 0:
            return accumulator
        sums, sampled_counts, counts = accumulator
        batch_counts = np.bincount(batch.labels, minlength=self._num_classes)
        counts += batch_counts
        labels, pred_probs = batch.labels, batch.pred_probs
        if self._sample_fraction < 1.0:
            rows = np.flatnonzero(sampling.in_sample(batch.ids, self._sample_fraction))
            labels, pred_probs = labels[rows], pred_probs[rows]
            batch_counts = np.bincount(labels, minlength=self._num_classes)
        sampled_counts += batch_counts
        confidence = kernels.self_confidence(labels, pred_probs)
        batch_sums = kernels.exact_sums_by_class(labels, confidence, self._num_classes)
        for k, value in enumerate(batch_sums):
            if value:
                sums[k] += value
        return accumulator

    def merge_accumulators(self, accumulators):
        accumulators = iter(accumulators)
        sums, sampled_counts, counts = next(accumulators)
        sums, sampled_counts, counts = list(sums), sampled_counts.copy(), counts.copy()
        for other_sums, other_sampled_counts, other_counts in accumulators:
            for k, value in enumerate(other_sums):
                sums[k] += value
            sampled_counts += other_sampled_counts
            counts += other_counts
        return [sums, sampled_counts, counts]

    def extract_output(self, accumulator) -> ThresholdStats:
        sums, sampled_counts, counts = accumulator
        return ThresholdStats(
            thresholds=kernels.confident_thresholds(sums, sampled_counts),
            examples_per_class=counts.copy(),
            num_examples=int(counts.sum()),
            sampled_examples_per_class=sampled_counts.copy(),
        )


@dataclasses.dataclass
class IssueCountStats:
    """What the cut needs: per-class counts, the histogram of all scores and the
    histogram of the scores of rows the model disagrees with (possible issues).

    ``normalization`` is None where only the ``off_diagonal`` estimate was counted.
    """

    prune_counts: np.ndarray
    normalization: Optional[np.ndarray]
    class_counts: np.ndarray
    score_histogram: np.ndarray
    issue_histogram: np.ndarray

    def num_issues(self, estimation_method: str) -> int:
        if self.normalization is None and estimation_method != "off_diagonal":
            raise ValueError(f"{estimation_method} needs the normalization counts, which were not counted")
        return kernels.estimate_num_issues(
            self.prune_counts, self.normalization, self.class_counts, estimation_method
        )

    def summary_histogram(self) -> np.ndarray:
        return self.score_histogram.reshape(NUM_SUMMARY_BINS, -1).sum(axis=1)


class IssueCountFn(beam.CombineFn):
    """Sums per-class prune/normalisation/label counts and two score histograms."""

    def __init__(self, num_classes: int, num_bins: int = NUM_SCORE_BINS):
        self._num_classes = num_classes
        self._num_bins = num_bins

    def create_accumulator(self):
        k = self._num_classes
        return np.zeros((3, k), dtype=np.int64), np.zeros((2, self._num_bins), dtype=np.int64)

    def add_input(self, accumulator, scored: ScoredBatch):
        if len(scored.scores) == 0:
            return accumulator
        counts, histogram = accumulator
        counts += kernels.issue_count_stats(
            scored.examples.labels, scored.predicted, scored.confident, self._num_classes
        )
        # One bincount over (bin, model agrees): all rows, and those that can be issues.
        keys = kernels.score_bins(scored.scores, self._num_bins) * 2 + scored.model_agrees
        by_agreement = np.bincount(keys, minlength=2 * self._num_bins).reshape(self._num_bins, 2)
        histogram[0] += by_agreement[:, 0] + by_agreement[:, 1]
        histogram[1] += by_agreement[:, 0]
        return accumulator

    def merge_accumulators(self, accumulators):
        accumulators = iter(accumulators)
        counts, histogram = next(accumulators)
        counts, histogram = counts.copy(), histogram.copy()
        for other_counts, other_histogram in accumulators:
            counts += other_counts
            histogram += other_histogram
        return counts, histogram

    def extract_output(self, accumulator) -> IssueCountStats:
        counts, histogram = accumulator
        return IssueCountStats(
            counts[0].copy(), counts[1].copy(), counts[2].copy(), histogram[0].copy(), histogram[1].copy()
        )


@dataclasses.dataclass
class ScoreHistogram:
    """Counts of every row's score in ``len(counts)`` equal bins of [0, 1]."""

    counts: np.ndarray


class ScoreHistogramFn(beam.CombineFn):
    """The histogram of every row's score over ``num_bins`` bins of [0, 1] (int64 counts)."""

    def __init__(self, num_bins: int = NUM_SCORE_BINS):
        self._num_bins = num_bins

    def create_accumulator(self) -> np.ndarray:
        return np.zeros(self._num_bins, dtype=np.int64)

    def add_input(self, histogram: np.ndarray, scored: ScoredBatch) -> np.ndarray:
        if len(scored.scores):
            histogram += np.bincount(kernels.score_bins(scored.scores, self._num_bins), minlength=self._num_bins)
        return histogram

    def merge_accumulators(self, histograms) -> np.ndarray:
        histograms = iter(histograms)
        merged = next(histograms).copy()
        for other in histograms:
            merged += other
        return merged

    def extract_output(self, histogram: np.ndarray) -> ScoreHistogram:
        return ScoreHistogram(histogram)


class SumCountsFn(beam.CombineFn):
    """Sums tuples of int64 arrays element by element (exact; the shapes fixed by ``shapes``)."""

    def __init__(self, shapes: Sequence[int]):
        self._shapes = tuple(shapes)

    def create_accumulator(self):
        return tuple(np.zeros(shape, dtype=np.int64) for shape in self._shapes)

    def add_input(self, accumulator, counts):
        for total, part in zip(accumulator, counts):
            total += part
        return accumulator

    def merge_accumulators(self, accumulators):
        accumulators = iter(accumulators)
        merged = tuple(a.copy() for a in next(accumulators))
        for other in accumulators:
            self.add_input(merged, other)
        return merged

    def extract_output(self, accumulator):
        return accumulator


class LowestScoresFn(beam.CombineFn):
    """Keeps the ``keep_lowest`` candidates lowest by (score, id): a bottom-n combiner.

    It picks the issues' share of the cutoff bin (see ``IssueCut``).
    ``beam.combiners.Top`` fixes n when the pipeline is built, but n is only
    known at run time, so every candidate batch carries it. The accumulator is a
    list of candidate batches, compacted to n rows whenever it holds twice that,
    so adding a batch costs amortised O(batch size).
    """

    _MIN_COMPACT_ROWS = 1 << 16

    def __init__(self, id_dtype: Any = np.int64):
        self._id_dtype = id_dtype

    def create_accumulator(self) -> List[IssueCandidates]:
        return []

    def get_accumulator_coder(self):
        return BatchCoder()

    @staticmethod
    def _rows(accumulator: List[IssueCandidates]) -> int:
        return sum(len(part) for part in accumulator)

    def _compact(self, accumulator: List[IssueCandidates]) -> List[IssueCandidates]:
        parts = [p for p in accumulator if len(p)]
        if not parts:
            return []
        # Readers emit batches in id order: concatenated by first id, they usually
        # stay in id order, which saves ranking a sort.
        parts.sort(key=lambda part: part.ids[0])
        merged = IssueCandidates.concatenate(parts)
        keep = kernels.lowest_by_score_then_id(merged.scores, merged.ids, merged.keep_lowest)
        return [merged.take(keep)]

    def _maybe_compact(self, accumulator):
        if not accumulator:
            return accumulator
        limit = max(2 * max(p.keep_lowest for p in accumulator), self._MIN_COMPACT_ROWS)
        if self._rows(accumulator) > limit:
            return self._compact(accumulator)
        return accumulator

    def add_input(self, accumulator, candidates: IssueCandidates):
        if len(candidates):
            accumulator.append(candidates)
        return self._maybe_compact(accumulator)

    def merge_accumulators(self, accumulators):
        merged = [part for accumulator in accumulators for part in accumulator]
        return self._maybe_compact(merged)

    def compact(self, accumulator):
        return self._compact(accumulator)

    def extract_output(self, accumulator) -> IssueCandidates:
        compacted = self._compact(accumulator)
        return compacted[0] if compacted else IssueCandidates.empty(self._id_dtype)


@dataclasses.dataclass
class IssueTotals:
    """How many issues were ranked, and their lowest and highest score."""

    num_issues: int = 0
    min_score: float = float("inf")
    max_score: float = float("-inf")

    def score_range(self):
        return [self.min_score, self.max_score] if self.num_issues else None


class IssueTotalsFn(beam.CombineFn):
    """Totals over the ranked ``(range_index, num_ranges, table)`` elements, for the summary."""

    def create_accumulator(self) -> IssueTotals:
        return IssueTotals()

    def add_input(self, accumulator: IssueTotals, ranked) -> IssueTotals:
        table = ranked[2]
        if table.num_rows:
            scores = table.column("label_quality").to_numpy()
            accumulator.num_issues += table.num_rows
            accumulator.min_score = min(accumulator.min_score, float(scores.min()))
            accumulator.max_score = max(accumulator.max_score, float(scores.max()))
        return accumulator

    def merge_accumulators(self, accumulators) -> IssueTotals:
        merged = IssueTotals()
        for other in accumulators:
            merged.num_issues += other.num_issues
            merged.min_score = min(merged.min_score, other.min_score)
            merged.max_score = max(merged.max_score, other.max_score)
        return merged

    def extract_output(self, accumulator: IssueTotals) -> IssueTotals:
        return accumulator


# --- full confident learning (filter_by): the joint, keyed histograms, keyed bottom-n ------


class _SparseParts:
    """Sparse (codes, counts) parts summed lazily: merged whenever they hold more than twice
    the cells of the last merge (plus a floor), so adding a batch costs amortised O(its cells)."""

    _MIN_MERGE_CELLS = 1 << 16

    def __init__(self):
        self.parts: List = []
        self.cells = 0
        self.merged_cells = 0

    def add(self, codes: np.ndarray, counts: np.ndarray) -> None:
        if len(codes):
            self.parts.append((codes, counts))
            self.cells += len(codes)
            if self.cells > 2 * self.merged_cells + self._MIN_MERGE_CELLS:
                self.merge()

    def merge(self):
        codes, counts = confident_joint.merge_sparse_counts(self.parts)
        self.parts = [(codes, counts)] if len(codes) else []
        self.cells = self.merged_cells = len(codes)
        return codes, counts


class ConfidentJointFn(beam.CombineFn):
    """Sums ``JointCounts``: the sparse cells of the confident joint, the label counts and the
    confident-learning issue count. The accumulator holds only the cells that occur (at most
    one per row of a batch), never K^2 counters, so K = 10,000 costs what its joint holds."""

    def __init__(self, num_classes: int):
        self._num_classes = num_classes

    def create_accumulator(self):
        return [_SparseParts(), np.zeros(self._num_classes, dtype=np.int64), 0]

    def add_input(self, accumulator, part: JointCounts):
        accumulator[0].add(part.codes, part.counts)
        accumulator[1] += part.label_counts
        accumulator[2] += int(part.num_confident_learning_issues)
        return accumulator

    def merge_accumulators(self, accumulators):
        merged = self.create_accumulator()
        for cells, label_counts, issues in accumulators:
            for codes, counts in cells.parts:
                merged[0].add(codes, counts)
            merged[1] += label_counts
            merged[2] += issues
        return merged

    def compact(self, accumulator):
        accumulator[0].merge()
        return accumulator

    def extract_output(self, accumulator) -> JointCounts:
        codes, counts = accumulator[0].merge()
        return JointCounts(codes, counts, accumulator[1].copy(), int(accumulator[2]))


class _DenseCounts:
    """A keyed histogram's counters, allocated on the first entries (their ``size`` is only
    known at run time); pickled as its non-zero counters."""

    def __init__(self):
        self.counts: Optional[np.ndarray] = None

    def add(self, size: int, codes: np.ndarray) -> None:
        if self.counts is None:
            self.counts = np.zeros(size, dtype=np.int64)
        elif len(self.counts) != size:
            raise ValueError(f"histogram entries for {size} counters met an accumulator of {len(self.counts)}")
        if 2 * len(codes) >= size:
            self.counts += np.bincount(codes, minlength=size)
        elif len(codes):
            np.add.at(self.counts, codes, 1)

    def add_counts(self, other: "_DenseCounts") -> None:
        if other.counts is None:
            return
        if self.counts is None:
            self.counts = other.counts.copy()
        else:
            self.counts += other.counts

    def __getstate__(self):
        # Never a false value: pickle would then skip __setstate__ on loading.
        if self.counts is None:
            return (0, None, None)
        nonzero = np.flatnonzero(self.counts)
        return len(self.counts), nonzero, self.counts[nonzero]

    def __setstate__(self, state):
        size, nonzero, values = state
        self.counts = None
        if nonzero is not None:
            self.counts = np.zeros(size, dtype=np.int64)
            self.counts[nonzero] = values


@dataclasses.dataclass
class KeyedHistogram:
    """A merged keyed histogram: sorted non-zero ``codes`` (``key * bins + bin``) and ``counts``."""

    codes: np.ndarray
    counts: np.ndarray

    @staticmethod
    def empty() -> "KeyedHistogram":
        return KeyedHistogram(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))


class KeyedHistogramFn(beam.CombineFn):
    """Counts ``HistogramEntries`` into dense counters (at most
    ``confident_joint.MAX_HISTOGRAM_COUNTERS``, 32 MiB), exact and in any order; the output is
    sparse."""

    def create_accumulator(self) -> _DenseCounts:
        return _DenseCounts()

    def add_input(self, accumulator: _DenseCounts, entries: Optional[HistogramEntries]) -> _DenseCounts:
        if entries is not None:  # None: nothing to count (a part of a tuple with nothing here)
            accumulator.add(entries.size, entries.codes)
        return accumulator

    def merge_accumulators(self, accumulators) -> _DenseCounts:
        merged = _DenseCounts()
        for accumulator in accumulators:
            merged.add_counts(accumulator)
        return merged

    def extract_output(self, accumulator: _DenseCounts) -> KeyedHistogram:
        if accumulator.counts is None:
            return KeyedHistogram.empty()
        codes = np.flatnonzero(accumulator.counts).astype(np.int64)
        return KeyedHistogram(codes, accumulator.counts[codes].copy())


def lowest_entries_per_key(candidates: SelectionCandidates) -> SelectionCandidates:
    """Of each key's entries, its ``take`` lowest by (value, id), by key then rank."""
    if len(candidates) == 0:
        return candidates
    keys, first = np.unique(candidates.keys, return_index=True)
    local = np.searchsorted(keys, candidates.keys)
    chosen = confident_joint.lowest_per_key(local, candidates.values, candidates.ids, candidates.take[first])
    return candidates.take_rows(chosen)


class LowestPerKeyFn(beam.CombineFn):
    """Keeps, for every key, its ``take`` entries lowest by (value, id): a keyed bottom-n whose
    n per key travels with the entries (it is only known at run time). The accumulator is a list
    of parts, compacted to the kept entries whenever it holds more than twice as many (plus a
    floor), so memory stays within about twice the entries the keys take."""

    _MIN_COMPACT_ROWS = 1 << 16

    def __init__(self, id_dtype: Any = np.int64):
        self._id_dtype = id_dtype

    def create_accumulator(self):
        return [[], 0]  # parts, entries kept by the last compaction

    def get_accumulator_coder(self):
        return BatchCoder()

    def _maybe_compact(self, accumulator):
        parts, kept = accumulator
        if sum(len(p) for p in parts) > 2 * kept + self._MIN_COMPACT_ROWS:
            return self.compact(accumulator)
        return accumulator

    def add_input(self, accumulator, candidates: SelectionCandidates):
        if len(candidates):
            accumulator[0].append(candidates)
        return self._maybe_compact(accumulator)

    def merge_accumulators(self, accumulators):
        parts, kept = [], 0
        for accumulator_parts, accumulator_kept in accumulators:
            parts.extend(accumulator_parts)
            kept += accumulator_kept
        return self._maybe_compact([parts, kept])

    def compact(self, accumulator):
        parts = [p for p in accumulator[0] if len(p)]
        if not parts:
            return [[], 0]
        lowest = lowest_entries_per_key(SelectionCandidates.concatenate(parts))
        return [[lowest], len(lowest)]

    def extract_output(self, accumulator) -> SelectionCandidates:
        parts = self.compact(accumulator)[0]
        return parts[0] if parts else SelectionCandidates.empty(self._id_dtype)


@dataclasses.dataclass
class SelectedIssues:
    """The rows a ``filter_by`` selected (``num_selected``, before rows where the model agrees
    with the label are dropped) and the histogram of the issues' scores (after)."""

    num_selected: int
    issue_histogram: np.ndarray


class SelectedIssuesFn(beam.CombineFn):
    """Counts selected rows (``IssueCandidates``) and bins the scores of those that stay issues:
    all of them, or those where the model does not agree with the label."""

    def __init__(self, drops_agreeing_rows: bool, num_bins: int = NUM_SCORE_BINS):
        self._drops_agreeing_rows = drops_agreeing_rows
        self._num_bins = num_bins

    def create_accumulator(self):
        return [0, np.zeros(self._num_bins, dtype=np.int64)]

    def add_input(self, accumulator, candidates: IssueCandidates):
        if len(candidates):
            accumulator[0] += len(candidates)
            scores = candidates.scores[~candidates.model_agrees] if self._drops_agreeing_rows else candidates.scores
            accumulator[1] += np.bincount(kernels.score_bins(scores, self._num_bins), minlength=self._num_bins)
        return accumulator

    def merge_accumulators(self, accumulators):
        merged = self.create_accumulator()
        for selected, histogram in accumulators:
            merged[0] += selected
            merged[1] += histogram
        return merged

    def extract_output(self, accumulator) -> SelectedIssues:
        return SelectedIssues(int(accumulator[0]), accumulator[1].copy())
