"""The batch types that flow between the pipeline's steps.

Elements are whole batches of rows, never one Python object per example: per
element Python overhead costs far more than the numpy work on a row. Every
reader yields ``ExampleBatch``; the passes never know which file format it was.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional, Sequence, Tuple

import numpy as np



@dataclasses.dataclass(frozen=True)
class MalformedRow:
    """A row a reader could not even shape into a batch (say a wrong-length list)."""

    id: Any
    reason: str
    label: Any
    pred_probs: Any


@dataclasses.dataclass(frozen=True)
class ExampleBatch:
    """A batch of examples: ids ``(n,)``, given labels ``(n,)``, pred_probs ``(n, K)``.

    ``ids`` are int64 (row numbers, or an id column) or strings; ``labels`` have any
    integer dtype until validation turns them into int64; ``pred_probs`` keep the
    reader's float dtype. ``malformed`` carries rows the reader had to set aside,
    so the one validation step decides and reports every invalid record.
    """

    ids: np.ndarray
    labels: np.ndarray
    pred_probs: np.ndarray
    malformed: Tuple[MalformedRow, ...] = ()

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        return self.pred_probs.shape[1]

    def take(self, indices: np.ndarray) -> "ExampleBatch":
        return ExampleBatch(self.ids[indices], self.labels[indices], self.pred_probs[indices])


@dataclasses.dataclass(frozen=True)
class ScoredBatch:
    """What the scoring step knows about each row of one ``ExampleBatch``.

    ``predicted`` is each row's predicted class and ``top_prob`` its probability;
    ``confident`` marks rows whose predicted class clears its threshold, the
    rows the issue count is built from; ``model_agrees`` rows that can never be
    issues. Each is None when the step that scored the batch did not need it.
    ``examples`` is kept for the steps fused after scoring that need whole
    probability rows for a few candidates.
    """

    examples: ExampleBatch
    predicted: Optional[np.ndarray]
    scores: np.ndarray
    confident: Optional[np.ndarray]
    model_agrees: Optional[np.ndarray] = None
    top_prob: Optional[np.ndarray] = None


@dataclasses.dataclass(frozen=True)
class DisagreeingRows:
    """The rows of a batch whose predicted class is not the given label, in a few bytes each.

    Every label issue, and every row the ``off_diagonal`` count counts, is such a
    row; with ``predicted_prob`` (the predicted class's probability, in the
    input's dtype) the count follows from the thresholds without reading the
    data again. ``given_prob`` is the given label's probability.
    """

    ids: np.ndarray
    given: np.ndarray
    predicted: np.ndarray
    given_prob: np.ndarray
    predicted_prob: np.ndarray
    scores: np.ndarray
    model_agrees: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)

    def candidates(self, rows: np.ndarray, keep_lowest: int) -> "IssueCandidates":
        """The rows ``rows`` as issue candidates."""
        return IssueCandidates(
            self.ids[rows], self.given[rows], self.predicted[rows], self.scores[rows], self.model_agrees[rows],
            keep_lowest, self.given_prob[rows], self.predicted_prob[rows],
        )

    @staticmethod
    def concatenate(parts: Sequence["DisagreeingRows"]) -> "DisagreeingRows":
        return DisagreeingRows(*(np.concatenate([getattr(p, f.name) for p in parts])
                                 for f in dataclasses.fields(DisagreeingRows)))


@dataclasses.dataclass(frozen=True)
class IssueCandidates:
    """Rows that may be label issues, with what ranking and the issues table need.

    ``keep_lowest`` is for a bottom-n selection over such rows (rows lowest by
    score, then id); ``model_agrees`` marks rows dropped from the issues after it.
    ``given_prob`` and ``predicted_prob`` are the probabilities of the given and
    the predicted class (in the input's dtype).
    """

    ids: np.ndarray
    given: np.ndarray
    predicted: np.ndarray
    scores: np.ndarray
    model_agrees: np.ndarray
    keep_lowest: int
    given_prob: np.ndarray
    predicted_prob: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)

    def take(self, indices: np.ndarray) -> "IssueCandidates":
        return dataclasses.replace(
            self, **{name: getattr(self, name)[indices] for name in _CANDIDATE_ARRAYS}
        )

    @staticmethod
    def concatenate(parts: Sequence["IssueCandidates"]) -> "IssueCandidates":
        arrays = {name: np.concatenate([getattr(p, name) for p in parts]) for name in _CANDIDATE_ARRAYS}
        return IssueCandidates(keep_lowest=max(p.keep_lowest for p in parts), **arrays)

    @staticmethod
    def empty(id_dtype: Any) -> "IssueCandidates":
        return IssueCandidates(
            ids=np.zeros(0, dtype=id_dtype),
            given=np.zeros(0, dtype=np.int64),
            predicted=np.zeros(0, dtype=np.int64),
            scores=np.zeros(0, dtype=np.float64),
            model_agrees=np.zeros(0, dtype=bool),
            keep_lowest=0,
            given_prob=np.zeros(0, dtype=np.float64),
            predicted_prob=np.zeros(0, dtype=np.float64),
        )


_CANDIDATE_ARRAYS = ("ids", "given", "predicted", "scores", "model_agrees", "given_prob", "predicted_prob")


@dataclasses.dataclass(frozen=True)
class JointCounts:
    """A share of the confident joint (or all of it): the sparse cells, sorted unique int64
    codes ``given * K + likely_true`` with int64 ``counts``; ``label_counts`` ``(K,)``, rows per
    given label; ``num_confident_learning_issues``, rows counted off the diagonal where the
    model does not agree with the label (cleanlab's ``num_label_issues``)."""

    codes: np.ndarray
    counts: np.ndarray
    label_counts: np.ndarray
    num_confident_learning_issues: int

    @property
    def num_examples(self) -> int:
        return int(self.label_counts.sum())

    @staticmethod
    def empty(num_classes: int) -> "JointCounts":
        return JointCounts(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64),
                           np.zeros(num_classes, dtype=np.int64), 0)


@dataclasses.dataclass(frozen=True)
class HistogramEntries:
    """One value per entry for a keyed histogram of ``size`` counters: ``codes`` are
    ``key * bins + bin`` (int64). ``size`` travels with the entries because the number of keys
    (a plan's cells) is only known at run time."""

    size: int
    codes: np.ndarray

    def __len__(self) -> int:
        return len(self.codes)


@dataclasses.dataclass(frozen=True)
class SelectionCandidates:
    """Rows at a selection key's cut bin, competing for its ``take`` slots by (value, id).

    ``keys``: the selection key (a noise-rate cell, ``cells + class``, or 0 for ``low_*``);
    ``values``: float64, lowest taken first; ``take``: the key's share of its cut bin, carried
    by every entry because it is only known at run time. ``flags``: bit 0 set when the row is
    taken for sure by prune_by_noise_rate (in another cell of its class), bit 1 when taken for
    sure by prune_by_class. ``given``, ``predicted``, ``scores`` (the ranking's label quality)
    and ``model_agrees`` are what the issue table needs. A row may appear once per key.
    """

    keys: np.ndarray
    values: np.ndarray
    ids: np.ndarray
    take: np.ndarray
    flags: np.ndarray
    given: np.ndarray
    predicted: np.ndarray
    scores: np.ndarray
    model_agrees: np.ndarray
    given_prob: np.ndarray
    predicted_prob: np.ndarray

    NOISE_RATE_SURE = 1
    CLASS_SURE = 2

    def __len__(self) -> int:
        return len(self.keys)

    def take_rows(self, indices: np.ndarray) -> "SelectionCandidates":
        return SelectionCandidates(*(getattr(self, f.name)[indices] for f in dataclasses.fields(self)))

    def issues(self) -> "IssueCandidates":
        """The entries as issue candidates (one per entry; deduplicate first)."""
        return IssueCandidates(self.ids, self.given, self.predicted, self.scores, self.model_agrees, 0,
                               self.given_prob, self.predicted_prob)

    @staticmethod
    def concatenate(parts: Sequence["SelectionCandidates"]) -> "SelectionCandidates":
        return SelectionCandidates(*(np.concatenate([getattr(p, f.name) for p in parts])
                                     for f in dataclasses.fields(SelectionCandidates)))

    @staticmethod
    def empty(id_dtype: Any) -> "SelectionCandidates":
        empty = np.zeros(0, dtype=np.int64)
        return SelectionCandidates(empty, np.zeros(0, dtype=np.float64), np.zeros(0, dtype=id_dtype), empty,
                                   np.zeros(0, dtype=np.uint8), empty, empty, np.zeros(0, dtype=np.float64),
                                   np.zeros(0, dtype=bool), np.zeros(0, dtype=np.float64),
                                   np.zeros(0, dtype=np.float64))
