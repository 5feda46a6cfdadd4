"""The batch types that flow between the pipeline's steps.

Elements are whole batches of rows, never one Python object per example: per
element Python overhead costs far more than the numpy work on a row. Every
reader yields ``ExampleBatch``; the passes never know which file format it was.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from beam_labelissues import kernels


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

    ``confident`` marks rows whose predicted class clears its threshold, the
    rows the issue count is built from; ``model_agrees`` rows that can never be
    issues. The three are None when the step that scored the batch did not need them. ``examples`` is kept
    for the steps fused after scoring that need whole probability rows for a few
    candidates.
    """

    examples: ExampleBatch
    predicted: Optional[np.ndarray]
    scores: np.ndarray
    confident: Optional[np.ndarray]
    model_agrees: Optional[np.ndarray] = None


@dataclasses.dataclass(frozen=True)
class IssueCandidates:
    """Rows that may be label issues, with what ranking needs.

    ``keep_lowest`` is for a bottom-n selection over such rows (rows lowest by
    score, then id); ``model_agrees`` marks rows dropped from the issues after it.
    """

    ids: np.ndarray
    given: np.ndarray
    predicted: np.ndarray
    scores: np.ndarray
    model_agrees: np.ndarray
    keep_lowest: int

    def __len__(self) -> int:
        return len(self.scores)

    def take(self, indices: np.ndarray) -> "IssueCandidates":
        return IssueCandidates(
            self.ids[indices],
            self.given[indices],
            self.predicted[indices],
            self.scores[indices],
            self.model_agrees[indices],
            self.keep_lowest,
        )

    @staticmethod
    def concatenate(parts: Sequence["IssueCandidates"]) -> "IssueCandidates":
        return IssueCandidates(
            np.concatenate([p.ids for p in parts]),
            np.concatenate([p.given for p in parts]),
            np.concatenate([p.predicted for p in parts]),
            np.concatenate([p.scores for p in parts]),
            np.concatenate([p.model_agrees for p in parts]),
            max(p.keep_lowest for p in parts),
        )

    @staticmethod
    def empty(id_dtype: Any) -> "IssueCandidates":
        return IssueCandidates(
            np.zeros(0, dtype=id_dtype),
            np.zeros(0, dtype=np.int64),
            np.zeros(0, dtype=np.int64),
            np.zeros(0, dtype=np.float64),
            np.zeros(0, dtype=bool),
            0,
        )


def _json_number(value: Any) -> Any:
    """A JSON-safe form of a raw value: non-finite floats become strings."""
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    return value


def _json_id(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return _json_number(value)


def invalid_record(record_id: Any, reason: str, label: Any, pred_probs: Any) -> Dict[str, Any]:
    """One invalid record as written to ``invalid_records-*.jsonl``."""
    if isinstance(pred_probs, np.ndarray):
        pred_probs = pred_probs.tolist()
    if pred_probs is not None and not isinstance(pred_probs, (list, tuple)):
        pred_probs = [pred_probs]
    return {
        "id": _json_id(record_id),
        "reason": reason,
        "label": _json_number(label.item() if isinstance(label, np.generic) else label),
        "pred_probs": None if pred_probs is None else [_json_number(v) for v in pred_probs],
    }


def validate_batch(
    batch: ExampleBatch, num_classes: int, tolerance: float
) -> Tuple[ExampleBatch, List[Dict[str, Any]]]:
    """Splits a batch into its valid rows (labels as int64) and invalid records.

    The one validation rule every pass applies, so all passes see the same rows.
    """
    invalid = [
        invalid_record(row.id, row.reason, row.label, row.pred_probs) for row in batch.malformed
    ]
    if len(batch) and batch.pred_probs.shape[1] != num_classes:
        reason = f"pred_probs has {batch.pred_probs.shape[1]} columns, expected {num_classes}"
        invalid.extend(
            invalid_record(batch.ids[i], reason, batch.labels[i], batch.pred_probs[i])
            for i in range(len(batch))
        )
        return _empty_like(batch, num_classes), invalid
    bad, reasons = kernels.invalid_row_reasons(batch.labels, batch.pred_probs, num_classes, tolerance)
    if len(bad):
        invalid.extend(
            invalid_record(batch.ids[i], reason, batch.labels[i], batch.pred_probs[i])
            for i, reason in zip(bad.tolist(), reasons)
        )
        keep = np.ones(len(batch), dtype=bool)
        keep[bad] = False
        batch = batch.take(np.flatnonzero(keep))
    labels = batch.labels.astype(np.int64, copy=False)
    return ExampleBatch(batch.ids, labels, batch.pred_probs), invalid


def _empty_like(batch: ExampleBatch, num_classes: int) -> ExampleBatch:
    return ExampleBatch(
        batch.ids[:0],
        np.zeros(0, dtype=np.int64),
        np.zeros((0, num_classes), dtype=batch.pred_probs.dtype),
    )
