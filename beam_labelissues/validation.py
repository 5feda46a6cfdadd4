"""The validation rule, the invalid-record format and the errors a user sees.

Every pass over the data applies ``validate_batch`` to every batch, so all
passes see exactly the same rows. A record is invalid when its label is not a
class in ``[0, K)``, a probability is NaN, infinite, or outside ``[0, 1]`` by
more than the tolerance, or its probabilities do not sum to 1 within the row-sum
tolerance (confident learning assumes each row is a distribution over the
classes); readers add the rows they could not even shape (a null label, a list of
the wrong length) as ``MalformedRow``.

The errors below are what a user sees as one ``error:`` line; the command line
maps each kind to its own exit code (see ``cli.EXIT_CODES``).
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from beam_labelissues.batches import ExampleBatch


class LabelIssuesError(Exception):
    """Base of the errors this package reports to a user as one line, without a traceback."""


class UsageError(LabelIssuesError, ValueError):
    """Options that cannot be used, or not together."""


class InputFileError(LabelIssuesError, ValueError):
    """An input file is missing, unreadable or of a kind this pipeline refuses."""


class InvalidRecordError(LabelIssuesError, ValueError):
    """An input record breaks the validation rule and ``on_invalid`` is ``fail``."""


class DuplicateIdError(InvalidRecordError):
    """Two examples that can be label issues share an id: the ranking would depend on input order."""


class OutputDirError(UsageError):
    """The output directory cannot be used: not a directory, not writable, busy, or not ours."""


class RunError(LabelIssuesError):
    """The run itself failed (no space left, a filesystem error, a runner failure)."""


def is_finite_probability(values: np.ndarray, tolerance: float) -> np.ndarray:
    """True where a probability is finite and within ``tolerance`` of [0, 1]."""
    with np.errstate(invalid="ignore"):
        return np.isfinite(values) & (values >= -tolerance) & (values <= 1 + tolerance)


def row_sums(pred_probs: np.ndarray) -> np.ndarray:
    """Each row's sum, accumulated in float32 at least (float64 for float64 input).

    ``einsum`` rather than a matrix-vector product: on narrow rows both are several times
    faster than ``sum(axis=1)``, but the product goes to BLAS, whose threads spin against
    the reader's decoding thread and other worker processes (a 10M x 10 Parquet run took
    twice as long).
    """
    if pred_probs.dtype == np.float16 or pred_probs.ndim != 2:
        return pred_probs.sum(axis=-1, dtype=np.float32 if pred_probs.dtype == np.float16 else None)
    return np.einsum("ij->i", pred_probs)


def _sums_ok(pred_probs: np.ndarray, row_sum_tolerance: Optional[float]) -> Optional[np.ndarray]:
    """True where a row sums to 1 within the tolerance (None: the rule is off)."""
    if row_sum_tolerance is None or math.isinf(row_sum_tolerance):
        return None
    with np.errstate(invalid="ignore", over="ignore"):
        return np.abs(row_sums(pred_probs).astype(np.float64) - 1.0) <= row_sum_tolerance


def _all_valid(
    labels: np.ndarray, pred_probs: np.ndarray, num_classes: int, tolerance: float,
    row_sum_tolerance: Optional[float],
) -> bool:
    """The common case in a few vectorised reductions: min/max propagate NaN, and
    a NaN fails every comparison, so this is False whenever any value is bad."""
    if pred_probs.size == 0:
        return True
    low, high = pred_probs.min(), pred_probs.max()
    labels_ok = labels.min() >= 0 and labels.max() < num_classes
    if not (labels_ok and low >= -tolerance and high <= 1 + tolerance):
        return False
    sums_ok = _sums_ok(pred_probs, row_sum_tolerance)
    return bool(sums_ok is None or sums_ok.all())


def invalid_row_reasons(
    labels: np.ndarray, pred_probs: np.ndarray, num_classes: int, tolerance: float,
    row_sum_tolerance: Optional[float] = None,
) -> Tuple[np.ndarray, List[str]]:
    """Returns (indices of invalid rows, a reason for each): the rule for shaped rows.

    A row's first problem is its reason: the label, then a value, then the row sum.
    """
    labels = np.asarray(labels)
    if len(labels) and _all_valid(labels, pred_probs, num_classes, tolerance, row_sum_tolerance):
        return np.zeros(0, dtype=np.int64), []
    if labels.dtype.kind == "u":
        label_ok = labels < num_classes
    else:
        label_ok = (labels >= 0) & (labels < num_classes)
    probs_ok_cells = is_finite_probability(pred_probs, tolerance)
    probs_ok = probs_ok_cells.all(axis=1)
    sums_ok = _sums_ok(pred_probs, row_sum_tolerance)
    row_ok = label_ok & probs_ok if sums_ok is None else label_ok & probs_ok & sums_ok
    bad = np.flatnonzero(~row_ok)
    reasons = []
    for i in bad.tolist():
        if not label_ok[i]:
            reasons.append(f"label {labels[i]} is not a class in [0, {num_classes})")
            continue
        if probs_ok[i]:
            total = float(row_sums(pred_probs[i:i + 1])[0])
            reasons.append(
                f"pred_probs sums to {total:.6g}, not 1 within the row-sum tolerance {row_sum_tolerance!r} "
                "(each row must be a probability distribution over the classes)"
            )
            continue
        column = int(np.flatnonzero(~probs_ok_cells[i])[0])
        value = float(pred_probs[i, column])
        if math.isfinite(value):
            reasons.append(
                f"pred_probs[{column}] = {value!r} is outside [0, 1] by more than "
                f"the tolerance {tolerance!r}"
            )
        else:
            reasons.append(f"pred_probs[{column}] is {value!r}, not a finite number")
    return bad, reasons


def error_inside(error: BaseException) -> Optional[LabelIssuesError]:
    """The ``InvalidRecordError`` or ``InputFileError`` a runner wrapped, or only quoted.

    Beam re-raises a worker's exception wrapped (in-process) or as text (other
    processes, Flink): either way the user should see our one-line message.
    """
    seen = set()
    current: Optional[BaseException] = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, (InvalidRecordError, InputFileError)):
            return current
        current = current.__cause__ or current.__context__
    text = str(error)
    for kind in (InvalidRecordError, InputFileError):
        marker = f"{kind.__name__}: "
        if marker in text:
            message = text.split(marker, 1)[1].splitlines()[0]
            return kind(message.split(" [while running", 1)[0].strip().strip("'\""))
    return None


def _json_number(value: Any) -> Any:
    """A JSON-safe form of a raw value: non-finite floats become strings."""
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def _json_id(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return _json_number(value)


def invalid_record(record_id: Any, reason: str, label: Any, pred_probs: Any) -> Dict[str, Any]:
    """One invalid record as written to ``invalid_records-*.jsonl``: id, reason, label, pred_probs."""
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


def invalid_record_error(records: List[Dict[str, Any]]) -> InvalidRecordError:
    """The error for ``on_invalid='fail'``: names the first record and the reason."""
    first = records[0]
    return InvalidRecordError(
        f"invalid record id={first['id']!r}: {first['reason']}"
        f" ({len(records)} invalid record(s) in this batch; "
        "with on_invalid skip (--on_invalid skip) they are left out and listed)"
    )


def validate_batch(
    batch: ExampleBatch, num_classes: int, tolerance: float, row_sum_tolerance: Optional[float] = None
) -> Tuple[ExampleBatch, List[Dict[str, Any]]]:
    """Splits a batch into its valid rows (labels as int64) and its invalid records."""
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
    bad, reasons = invalid_row_reasons(batch.labels, batch.pred_probs, num_classes, tolerance, row_sum_tolerance)
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
