"""Parity with cleanlab on generated datasets through real pipelines on real files.

Every dataset runs through ``ReadNpyExamples`` + ``FindLabelIssues`` + the output
writer on the FnApiRunner; cleanlab (tests/oracle.py) computes the expected answer.
Datasets run a group at a time in one pipeline, so Beam's start-up is paid once
per group.
"""

from __future__ import annotations

import itertools
import os

import numpy as np
import pytest

from datasets import DatasetSpec, make_dataset, write_npy
from oracle import assert_matches, cleanlab_expected
from harness import read_output_dir, run_pipeline

OPTION_COMBOS = [
    dict(method=m, adjust_pred_probs=a, estimation_method=e)
    for m, a, e in itertools.product(
        ["self_confidence", "normalized_margin", "confidence_weighted_entropy"],
        [False, True],
        ["off_diagonal", "off_diagonal_calibrated"],
    )
    if not (a and m == "confidence_weighted_entropy")
]

_LABEL_DTYPES = ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"]
_SIZES = [  # (N, K)
    (1, 2), (2, 3), (5, 2), (37, 4), (100, 10), (250, 3), (1000, 10), (1000, 50),
    (2000, 1000), (3000, 200), (5000, 2), (5000, 20), (20000, 10), (20000, 100),
    (50000, 7), (200000, 10),
]


def _specs():
    specs = []
    for i, (n, k) in enumerate(_SIZES):
        for j, (prob_dtype, noise) in enumerate([("float32", 0.1), ("float64", 0.02), ("float16", 0.4)]):
            if j == 2 and n > 20000:
                continue
            label_dtype = _LABEL_DTYPES[(i + 3 * j) % len(_LABEL_DTYPES)]
            if label_dtype == "int8" and k > 127 or label_dtype == "uint8" and k > 255:
                label_dtype = "int32"
            specs.append(DatasetSpec(n, k, prob_dtype, label_dtype, noise, seed=100 * i + j))
    specs.append(DatasetSpec(3000, 10, "float32", "int64", 0.1, seed=7, quantize=20))
    specs.append(DatasetSpec(3000, 4, "float64", "uint16", 0.3, seed=8, quantize=5))
    return specs


SPECS = _specs()
CASES = [(spec, OPTION_COMBOS[i % len(OPTION_COMBOS)]) for i, spec in enumerate(SPECS)]
NUM_GROUPS = 4
_RESULTS = {}


def _case_id(case):
    spec, options = case
    flags = [options["method"], "adjusted" if options["adjust_pred_probs"] else "raw", options["estimation_method"]]
    return spec.name + "-" + "-".join(flags)


def _run_group(group: int, base_dir: str):
    if group in _RESULTS:
        return _RESULTS[group]
    runs, expected = [], {}
    for index, (spec, options) in enumerate(CASES):
        if index % NUM_GROUPS != group:
            continue
        labels, probs = make_dataset(spec)
        directory = os.path.join(base_dir, f"case{index}")
        labels_path, probs_path = write_npy(directory, labels, probs)
        # Rounded (quantized) rows no longer sum to 1: the row-sum rule is off for them.
        row_sums = {"row_sum_tolerance": None} if spec.quantize else {}
        runs.append(dict(labels_path=labels_path, pred_probs_path=probs_path,
                         output_dir=os.path.join(directory, "out"), with_scores=index % 3 == 0,
                         **options, **row_sums))
        expected[index] = (cleanlab_expected(labels, probs, **options), os.path.join(directory, "out"))
    run_pipeline(runs)
    _RESULTS[group] = expected
    return expected


def test_enough_cases_cover_every_option_and_dtype():
    assert len(CASES) >= 40
    assert {tuple(sorted(c.items())) for _, c in CASES} == {tuple(sorted(c.items())) for c in OPTION_COMBOS}
    assert {s.prob_dtype for s in SPECS} == {"float16", "float32", "float64"}
    assert set(_LABEL_DTYPES) <= {s.label_dtype for s in SPECS}
    assert min(s.num_examples for s in SPECS) == 1 and max(s.num_examples for s in SPECS) == 200000
    assert min(s.num_classes for s in SPECS) == 2 and max(s.num_classes for s in SPECS) == 1000


@pytest.mark.parametrize(
    "index",
    [pytest.param(i, id=_case_id(c), marks=pytest.mark.xdist_group(f"parity{i % NUM_GROUPS}"))
     for i, c in enumerate(CASES)],
)
def test_pipeline_matches_cleanlab(index, tmp_path_factory):
    group = index % NUM_GROUPS
    base = tmp_path_factory.getbasetemp() / f"parity-group{group}"
    expected, output_dir = _run_group(group, str(base))[index]
    out = read_output_dir(output_dir)
    assert_matches(expected, out["issues"], out["summary"], out["scores"])
    assert len(out["issue_files"]) == 1


def test_float32_thresholds_agree_with_cleanlab_on_native_precision(tmp_path):
    """cleanlab averages float32 inputs in float32: agreement within that rounding."""
    spec = DatasetSpec(20000, 10, "float32", "int64", 0.1, seed=5)
    labels, probs = make_dataset(spec)
    labels_path, probs_path = write_npy(str(tmp_path), labels, probs)
    run_pipeline([dict(labels_path=labels_path, pred_probs_path=probs_path, output_dir=str(tmp_path / "out"))])
    summary = read_output_dir(str(tmp_path / "out"))["summary"]
    from cleanlab.experimental.label_issues_batched import LabelInspector

    inspector = LabelInspector(num_class=10, verbose=False, n_jobs=1)
    inspector.update_confident_thresholds(labels, probs)
    np.testing.assert_allclose(summary["confident_thresholds"], inspector.get_confident_thresholds(silent=True),
                               rtol=1e-6)
