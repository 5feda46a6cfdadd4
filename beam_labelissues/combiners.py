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

from beam_labelissues import kernels, sampling
from beam_labelissues.coders import BatchCoder
from beam_labelissues.batches import ExampleBatch, IssueCandidates, ScoredBatch

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
