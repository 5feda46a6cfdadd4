"""The validation rule and the invalid-record format, without a pipeline."""

from __future__ import annotations

import json

import numpy as np

from beam_labelissues import validation
from beam_labelissues.batches import ExampleBatch, MalformedRow


def test_invalid_row_reasons_name_the_problem():
    labels = np.array([0, 3, 1, 1, -1], dtype=np.int64)
    probs = np.array([[0.5, 0.5], [0.5, 0.5], [np.nan, 1], [1.2, -0.2], [0.5, 0.5]])
    bad, reasons = validation.invalid_row_reasons(labels, probs, 2, 1e-4)
    assert bad.tolist() == [1, 2, 3, 4]
    assert "label 3 is not a class in [0, 2)" in reasons[0]
    assert "nan" in reasons[1]
    assert "outside [0, 1]" in reasons[2]
    assert "label -1" in reasons[3]
    ok, _ = validation.invalid_row_reasons(np.array([0], dtype=np.uint64), np.array([[1.00001, -0.00001]]), 2, 1e-4)
    assert len(ok) == 0


def test_validate_batch_splits_valid_rows_and_formats_invalid_records_as_json():
    batch = ExampleBatch(
        ids=np.array([10, 11, 12, 13]),
        labels=np.array([0, 5, 1, 1], dtype=np.uint8),
        pred_probs=np.array([[0.9, 0.1], [0.5, 0.5], [np.inf, 0.0], [0.3, 0.7]], dtype=np.float32),
        malformed=(MalformedRow("x", "label is null", None, [0.5, 0.5]),),
    )
    valid, invalid = validation.validate_batch(batch, 2, 1e-4)
    assert valid.ids.tolist() == [10, 13] and valid.labels.dtype == np.int64
    assert [r["id"] for r in invalid] == ["x", 11, 12]
    assert invalid[2]["pred_probs"][0] == "inf"  # non-finite values are written as strings
    json.dumps(invalid)  # every record is JSON as written to invalid_records-*.jsonl
    error = validation.invalid_record_error(invalid)
    assert "invalid record id='x': label is null" in str(error) and "--on_invalid skip" in str(error)


def test_a_batch_of_the_wrong_width_is_invalid_row_by_row():
    batch = ExampleBatch(np.arange(3), np.zeros(3, np.int64), np.full((3, 4), 0.25))
    valid, invalid = validation.validate_batch(batch, 3, 1e-4)
    assert len(valid) == 0 and valid.pred_probs.shape == (0, 3)
    assert [r["reason"] for r in invalid] == ["pred_probs has 4 columns, expected 3"] * 3
