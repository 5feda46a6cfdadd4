"""beam_labelissues.LabelInspector against cleanlab's LabelInspector, call for call.

Both run cleanlab's documented example: update the thresholds over all batches,
score all batches, then get_num_issues / get_label_issues. cleanlab runs on the
same values cast to float64 (ours computes in float64 whatever the dtype).
"""

from __future__ import annotations

import numpy as np
import pytest
from cleanlab.experimental.label_issues_batched import LabelInspector as CleanlabInspector

from beam_labelissues import InvalidRecordError, LabelInspector
from beam_labelissues.combiners import ConfidentThresholdsFn
from beam_labelissues.batches import ExampleBatch
from datasets import DatasetSpec, make_dataset
from oracle import exact_mean_thresholds
from test_batched_api import OPTION_COMBOS


def _batches(n, scheme):
    """Row ranges: a fixed size, or uneven sizes ("uneven-with-empty": empty batches too,
    which cleanlab's inspector cannot take)."""
    if scheme.startswith("uneven") if isinstance(scheme, str) else False:
        sizes = [1, 2, 500, 3, 1234, 17, 999]
        if scheme == "uneven-with-empty":
            sizes = [0, 1, 2, 500, 0, 3, 1234, 17, 0, 999]
        bounds, start = [], 0
        for i in range(10**6):
            size = sizes[i % len(sizes)]
            bounds.append((start, min(start + size, n)))
            start += size
            if start >= n:
                return bounds
    return [(start, min(start + scheme, n)) for start in range(0, n, scheme)]


def _run(inspector, labels, probs, batches):
    for start, stop in batches:
        inspector.update_confident_thresholds(labels[start:stop], probs[start:stop])
    thresholds = np.array(inspector.get_confident_thresholds(silent=True), dtype=np.float64)
    returned = [inspector.score_label_quality(labels[start:stop], probs[start:stop]) for start, stop in batches]
    return thresholds, returned


def _kwargs(options):
    return dict(
        quality_score_kwargs={"method": options["method"], "adjust_pred_probs": options["adjust_pred_probs"]},
        num_issue_kwargs={"estimation_method": options["estimation_method"]},
    )


CASES = [  # (options, batch scheme, dataset)
    (options, scheme, DatasetSpec(1500 if scheme == 1 else 4000, k, dtype, "int64", 0.15, seed=10 * i + j))
    for i, options in enumerate(OPTION_COMBOS)
    for j, (scheme, k, dtype) in enumerate([(1, 4, "float64"), (7, 6, "float32"), (1000, 10, "float16"),
                                            ("uneven", 5, "float32")])
]


def _case_id(case):
    options, scheme, spec = case
    adjusted = "adj" if options["adjust_pred_probs"] else "raw"
    return f"{options['method']}-{adjusted}-{options['estimation_method']}-b{scheme}"


@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_same_calls_same_results_as_cleanlab(case):
    options, scheme, spec = case
    labels, probs = make_dataset(spec)
    probs64 = probs.astype(np.float64)
    batches = _batches(len(labels), scheme)
    ours = LabelInspector(num_class=spec.num_classes, verbose=False, **_kwargs(options))
    theirs = CleanlabInspector(num_class=spec.num_classes, verbose=False, n_jobs=1, **_kwargs(options))
    our_thresholds, our_batches = _run(ours, labels, probs, batches)
    their_thresholds, their_batches = _run(theirs, labels, probs64, batches)

    np.testing.assert_allclose(our_thresholds, their_thresholds, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(our_thresholds, exact_mean_thresholds(labels, probs64))
    np.testing.assert_array_equal(ours.examples_per_class, theirs.examples_per_class)
    assert ours.get_num_issues() == theirs.get_num_issues()
    for mine, cleanlab in zip(our_batches, their_batches):
        np.testing.assert_allclose(mine, cleanlab, rtol=0, atol=1e-12)
    scores = ours.get_quality_scores()
    np.testing.assert_allclose(scores, theirs.get_quality_scores(), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(scores, np.concatenate(our_batches))

    issues = ours.get_label_issues()
    their_issues = theirs.get_label_issues()
    num_issues = ours.get_num_issues()
    assert len(issues) == len(their_issues) == min(num_issues, len(labels))
    # Ranked by (score, index): cleanlab's argsort is unstable, so its order differs only among ties.
    stable = np.lexsort((np.arange(len(scores)), scores))
    np.testing.assert_array_equal(issues, stable[:len(issues)])
    tied = 0 < len(issues) < len(scores) and scores[stable[len(issues) - 1]] == scores[stable[len(issues)]]
    if not tied:
        np.testing.assert_array_equal(np.sort(issues), np.sort(their_issues))


def test_empty_batches_change_nothing():
    labels, probs = make_dataset(DatasetSpec(4000, 5, "float32", "int64", 0.15, seed=2))
    results = []
    for scheme in ("uneven", "uneven-with-empty"):
        inspector = LabelInspector(num_class=5, verbose=False)
        _run(inspector, labels, probs, _batches(len(labels), scheme))
        results.append((inspector.get_confident_thresholds(silent=True), inspector.get_num_issues(silent=True),
                        inspector.get_quality_scores(), inspector.get_label_issues()))
    assert any(start == stop for start, stop in _batches(4000, "uneven-with-empty"))
    for mine, other in zip(*results):
        np.testing.assert_array_equal(mine, other)


def test_enough_issues_found_in_the_cases():
    labels, probs = make_dataset(CASES[0][2])
    inspector = LabelInspector(num_class=4, verbose=False)
    _run(inspector, labels, probs, _batches(len(labels), 100))
    assert inspector.get_num_issues() > 50


def test_store_results_false_keeps_counts_only_like_cleanlab():
    labels, probs = make_dataset(DatasetSpec(3000, 5, "float64", "int64", 0.2, seed=3))
    ours = LabelInspector(num_class=5, verbose=False, store_results=False)
    theirs = CleanlabInspector(num_class=5, verbose=False, store_results=False)
    batches = _batches(3000, 256)
    _, our_batches = _run(ours, labels, probs, batches)
    _, their_batches = _run(theirs, labels, probs, batches)
    assert ours.get_num_issues() == theirs.get_num_issues() > 0
    np.testing.assert_allclose(np.concatenate(our_batches), np.concatenate(their_batches), rtol=0, atol=1e-12)
    for method in ("get_quality_scores", "get_label_issues"):
        with pytest.raises(ValueError, match="store_results"):
            getattr(theirs, method)()
        with pytest.raises(ValueError, match="store_results"):
            getattr(ours, method)()
    assert ours._scores == []  # nothing per example was kept


def test_update_num_issues_false_scores_without_counting():
    labels, probs = make_dataset(DatasetSpec(2000, 3, "float32", "int64", 0.2, seed=4))
    ours, theirs = LabelInspector(num_class=3, verbose=False), CleanlabInspector(num_class=3, verbose=False)
    for inspector, p in ((ours, probs), (theirs, probs.astype(np.float64))):
        inspector.update_confident_thresholds(labels, p)
        inspector.score_label_quality(labels[:1000], p[:1000], update_num_issues=False)
        inspector.score_label_quality(labels[1000:], p[1000:])
    assert ours.get_num_issues() == theirs.get_num_issues()
    assert len(ours.get_quality_scores()) == len(theirs.get_quality_scores()) == 2000


def test_calls_out_of_order_raise_as_in_cleanlab():
    labels, probs = make_dataset(DatasetSpec(50, 3, "float64", "int64", 0.2, seed=5))
    for cls in (LabelInspector, CleanlabInspector):
        inspector = cls(num_class=3, verbose=False)
        with pytest.raises(ValueError, match="Have not computed any confident_thresholds yet"):
            inspector.get_confident_thresholds()
        with pytest.raises(ValueError, match="Have not computed any confident_thresholds yet"):
            inspector.score_label_quality(labels, probs)
        inspector.update_confident_thresholds(labels, probs)
        with pytest.raises(ValueError, match="Have not evaluated any labels yet"):
            inspector.get_num_issues()
        with pytest.raises(ValueError, match="Have not evaluated any labels yet"):
            inspector.get_label_issues()
        with pytest.raises(ValueError, match="num_class must equal pred_probs.shape"):
            inspector.update_confident_thresholds(labels, probs[:, :2])
        with pytest.raises(ValueError, match="labels and pred_probs must have same length"):
            inspector.update_confident_thresholds(labels[:10], probs)


def test_invalid_records_raise_naming_their_index_in_the_stream():
    labels, probs = make_dataset(DatasetSpec(300, 4, "float32", "int64", 0.1, seed=6))
    inspector = LabelInspector(num_class=4, verbose=False)
    inspector.update_confident_thresholds(labels[:100], probs[:100])
    bad = probs[100:200].copy()
    bad[42, 3] = 1.5
    with pytest.raises(InvalidRecordError, match=r"id=142: pred_probs\[3\] = 1.5 is outside \[0, 1\]"):
        inspector.update_confident_thresholds(labels[100:200], bad)
    wrong = labels[:100].copy()
    wrong[7] = 4
    with pytest.raises(InvalidRecordError, match=r"id=7: label 4 is not a class in \[0, 4\)"):
        inspector.score_label_quality(wrong, probs[:100])
    assert inspector.examples_processed_thresh == 100 and inspector.examples_processed_quality == 0


def test_threads_give_identical_results():
    labels, probs = make_dataset(DatasetSpec(150000, 7, "float32", "int64", 0.1, seed=7))
    results = []
    for n_jobs in (1, 2, None):
        inspector = LabelInspector(num_class=7, verbose=False, n_jobs=n_jobs,
                                   quality_score_kwargs={"adjust_pred_probs": True},
                                   num_issue_kwargs={"estimation_method": "off_diagonal_calibrated"})
        _run(inspector, labels, probs, _batches(len(labels), 100000))
        results.append((inspector.get_confident_thresholds(silent=True), inspector.get_num_issues(silent=True),
                        inspector.get_quality_scores(), inspector.get_label_issues()))
    for other in results[1:]:
        for mine, theirs in zip(results[0], other):
            np.testing.assert_array_equal(mine, theirs)


def test_built_on_the_pipeline_accumulators():
    """The inspector's thresholds are ConfidentThresholdsFn's on the same rows, bit for bit."""
    labels, probs = make_dataset(DatasetSpec(5000, 6, "float32", "int64", 0.1, seed=8))
    inspector = LabelInspector(num_class=6, verbose=False)
    _run(inspector, labels, probs, _batches(5000, 333))
    fn = ConfidentThresholdsFn(6)
    accumulator = fn.add_input(fn.create_accumulator(), ExampleBatch(np.arange(5000), labels, probs))
    expected = fn.extract_output(accumulator).thresholds
    assert expected.tobytes() == inspector.get_confident_thresholds(silent=True).tobytes()


def test_verbose_prints_what_cleanlab_prints(capsys):
    labels, probs = make_dataset(DatasetSpec(100, 3, "float64", "int64", 0.1, seed=9))
    inspector = LabelInspector(num_class=3)
    inspector.update_confident_thresholds(labels, probs)
    inspector.get_confident_thresholds()
    inspector.score_label_quality(labels, probs)
    inspector.get_num_issues()
    out = capsys.readouterr().out
    assert "Total number of examples used to estimate confident thresholds: 100" in out
    assert "Total number of examples whose labels have been evaluated: 100" in out
