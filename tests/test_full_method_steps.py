"""The full method's steps one by one, without a pipeline: its CombineFns (one accumulator,
or split + merge + compact + pickling, agree exactly), the per-batch kernels against their
plain definitions, the resolution of the rows chosen at cut bins, and the options.

test_full_method.py runs them together as real pipelines against cleanlab.
"""

from __future__ import annotations

import dataclasses
import json
import pickle

import numpy as np
import pytest

from beam_labelissues import confident_joint as cj
from beam_labelissues import kernels
from beam_labelissues.batches import HistogramEntries, IssueCandidates, JointCounts, SelectionCandidates
from beam_labelissues.combiners import (
    ConfidentJointFn,
    KeyedHistogramFn,
    LowestPerKeyFn,
    SelectedIssuesFn,
    lowest_entries_per_key,
)
from beam_labelissues.io.outputs import Summary
from beam_labelissues.options import LabelIssuesOptions
from datasets import DatasetSpec, make_dataset
from harness import combine_split, combine_whole


# --- per-batch kernels against their definitions -----------------------------------------


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_exact_cutoffs_decide_as_float64(dtype):
    rng = np.random.default_rng(1)
    thresholds = np.concatenate([rng.random(20), [2e-6, 2.0, 0.5, 1.0]])
    cutoffs64 = thresholds - 1e-6
    # Values at, just below and just above each cutoff in the dtype, and random ones.
    at = cutoffs64.astype(dtype)
    values = np.concatenate([at, np.nextafter(at, np.asarray(-1, dtype)), np.nextafter(at, np.asarray(3, dtype)),
                             rng.random(200).astype(dtype)]).astype(dtype)
    cutoffs = cj.exact_cutoffs(thresholds, dtype)
    assert cutoffs.dtype == np.dtype(dtype)
    ours = values[:, None] >= cutoffs[None, :]
    expected = values.astype(np.float64)[:, None] >= cutoffs64[None, :]
    np.testing.assert_array_equal(ours, expected)


@pytest.mark.parametrize("k", [2, 10, 16, 17, 40])
def test_confident_counts_and_first_equal_the_plain_reductions(k):
    rng = np.random.default_rng(k)
    confident = rng.random((3000, k)) < rng.choice([0.01, 0.2, 0.6], size=(3000, 1))
    counts, first = cj.confident_counts_and_first(confident)
    np.testing.assert_array_equal(counts, confident.sum(axis=1))
    some = counts > 0
    np.testing.assert_array_equal(first[some], np.argmax(confident[some], axis=1))


@pytest.mark.parametrize("spec", [DatasetSpec(4000, 10, "float32", noise=0.3, seed=3),
                                  DatasetSpec(3000, 20, "float16", noise=0.2, seed=4, quantize=10),
                                  DatasetSpec(2000, 40, "float64", noise=0.4, seed=5, accuracy_boost=0.5)],
                         ids=lambda s: s.name)
def test_joint_of_a_batch_equals_the_kernels_it_fuses(spec):
    labels, probs = make_dataset(spec)
    labels = labels.astype(np.int64)
    thresholds = cj.filter_thresholds(np.full(spec.num_classes, 0.3) + np.linspace(0, 0.4, spec.num_classes),
                                      np.bincount(labels, minlength=spec.num_classes))
    joint = cj.confident_joint_of_batch(labels, probs, cj.exact_cutoffs(thresholds, probs.dtype), spec.num_classes)
    likely = cj.likely_true_labels(probs, thresholds)
    np.testing.assert_array_equal(joint.likely_true, likely)
    codes, counts = cj.confident_joint_cells(labels, likely, spec.num_classes)
    np.testing.assert_array_equal(joint.codes, codes)
    np.testing.assert_array_equal(joint.counts, counts)
    agrees = kernels.predictions(labels, probs)[2]
    assert joint.num_confident_learning_issues == int(cj.confident_learning_issues(labels, likely, agrees).sum())


def _plan_cells(k, rng, take_scale):
    given, true = np.nonzero(~np.eye(k, dtype=bool) & (rng.random((k, k)) < 0.7))
    order = np.lexsort((true, given))
    take = rng.integers(1, take_scale, len(given))
    return given[order].astype(np.int64), true[order].astype(np.int64), take


@pytest.mark.parametrize("dense", [True, False], ids=["dense-table", "per-cell"])
@pytest.mark.parametrize("spec", [DatasetSpec(6000, 8, "float32", noise=0.3, seed=7),
                                  DatasetSpec(6000, 6, "float32", noise=0.3, seed=8, quantize=20),
                                  DatasetSpec(4000, 5, "float16", noise=0.4, seed=9),
                                  DatasetSpec(4000, 7, "float64", noise=0.2, seed=10)], ids=lambda s: s.name)
def test_noise_rate_cut_and_selection_take_the_largest_margins_per_cell(spec, dense):
    """Histogram, cut, selection and the bottom-n at the cut bins together take, per cell, the
    rows with the largest float64 margin (ties: lower id), however the margins were binned
    (float32 arithmetic on float16/32 input, float64 per cell) and with coarse bins."""
    labels, probs = make_dataset(spec)
    labels = labels.astype(np.int64)
    k = spec.num_classes
    given, true, take = _plan_cells(k, np.random.default_rng(spec.seed), 400)
    m = len(given)
    table = None
    if dense:
        table = np.full((k, k), m, dtype=np.int32)
        table[given, true] = np.arange(m, dtype=np.int32)
    cells = cj.NoiseRateCells(k, given, true, table)
    num_bins = 64
    batches = [slice(a, a + 777) for a in range(0, len(labels), 777)]
    counts = np.zeros((m + 1) * num_bins, dtype=np.int64)
    for b in batches:
        np.add.at(counts, cj.noise_rate_histogram_codes(labels[b], probs[b], cells, num_bins), 1)
    codes = np.flatnonzero(counts)
    cut = cj.KeyedCut.from_histogram(codes, counts[codes], num_bins, np.append(take, 0))
    cut = cj.KeyedCut(num_bins, cut.cut_bin[:-1], cut.take_at_cut[:-1])
    selection = cj.SelectionPlan("prune_by_noise_rate", k, noise_rate=cells, noise_rate_cut=cut)
    sure_rows, entries = [], []
    for b in batches:
        sure, boundary, _ = selection.select(labels[b], probs[b])
        sure_rows.append(np.flatnonzero(sure) + b.start)
        entries.append(dataclasses.replace(boundary, rows=boundary.rows + b.start))
    boundary = cj.BoundaryEntries.concatenate(entries)
    chosen = cj.lowest_per_key(boundary.keys, boundary.values, boundary.rows, cut.take_at_cut)
    ours = np.union1d(np.concatenate(sure_rows), boundary.rows[chosen])
    probs64 = probs.astype(np.float64)
    expected = []
    for cell in range(m):
        members = np.flatnonzero(labels == given[cell])
        values = probs64[members, given[cell]] - probs64[members, true[cell]]
        expected.append(members[np.lexsort((members, values))[:take[cell]]])
    np.testing.assert_array_equal(ours, np.unique(np.concatenate(expected)))


def test_selection_bins_never_decrease():
    values = np.sort(np.concatenate([np.linspace(-1.1, 1.1, 20001), [0.0, -0.0, np.nextafter(0, 1)]]))
    for low, high in ((-1.0, 1.0), (0.0, 1.0)):
        bins = cj.selection_bins(values, low, high, 333)
        assert (np.diff(bins) >= 0).all() and bins.min() == 0 and bins.max() == 332


def test_bins_per_key_stay_within_the_counter_budget():
    for keys in (1, 10, 91, 1000, 50_000, 210_000, 10_000_000):
        bins = cj.bins_per_key(keys)
        assert 1 <= bins <= cj.MAX_BINS_PER_KEY
        assert keys * bins <= max(cj.MAX_HISTOGRAM_COUNTERS, keys)
    assert cj.bins_per_key(91) * 91 <= cj.TARGET_HISTOGRAM_COUNTERS


# --- resolving the rows chosen at cut bins -------------------------------------------------


def test_resolve_keeps_rows_selected_by_both_selections_once():
    # Keys 0-1: noise-rate cells; 2+: classes (offset 2). Flags: 1 = for sure by noise rate,
    # 2 = for sure by class.
    cells = cj.NoiseRateCells(3, np.array([0, 0]), np.array([1, 2]), None)
    plan = cj.SelectionPlan("both", 3, noise_rate=cells)
    keys = np.array([0, 1, 0, 2, 2, 3, 1])
    ids = np.array([10, 10, 11, 12, 13, 14, 15])
    flags = np.array([2, 2, 0, 1, 0, 1, 2], dtype=np.uint8)
    kept = ids[plan.resolve(keys, ids, flags)].tolist()
    # 10: chosen in two cells, for sure by class -> once. 11: chosen by noise rate only, not by
    # class -> out. 12: for sure by noise rate, chosen by class -> in. 13: class only -> out.
    # 14: for sure by noise rate, chosen by class -> in. 15: chosen by noise rate, sure by class.
    assert kept == [10, 12, 14, 15]
    pnr = cj.SelectionPlan("prune_by_noise_rate", 3, noise_rate=cells)
    assert ids[pnr.resolve(keys[:3], ids[:3], np.array([0, 0, 1], dtype=np.uint8))].tolist() == [10]
    by_class = cj.SelectionPlan("prune_by_class", 3)
    assert by_class.resolve(np.array([], dtype=np.int64), np.array([], dtype=np.int64),
                            np.array([], dtype=np.uint8)).tolist() == []


# --- CombineFns ---------------------------------------------------------------------------


def test_confident_joint_combine_is_exact_in_any_split():
    rng = np.random.default_rng(2)
    k = 300
    parts = []
    dense = np.zeros(k * k, dtype=np.int64)
    for _ in range(40):
        codes = np.unique(rng.integers(0, k * k, rng.integers(0, 3000)))
        counts = rng.integers(1, 50, len(codes))
        dense[codes] += counts
        parts.append(JointCounts(codes, counts, np.bincount(codes // k, minlength=k), int(rng.integers(0, 9))))
    fn = ConfidentJointFn(k)
    whole, split = combine_whole(fn, parts), combine_split(fn, parts, 7)
    for out in (whole, split):
        np.testing.assert_array_equal(out.codes, np.flatnonzero(dense))
        np.testing.assert_array_equal(out.counts, dense[np.flatnonzero(dense)])
        assert out.num_confident_learning_issues == sum(p.num_confident_learning_issues for p in parts)
        np.testing.assert_array_equal(out.label_counts, sum(p.label_counts for p in parts))
    empty = fn.extract_output(fn.create_accumulator())
    assert len(empty.codes) == 0 and empty.num_examples == 0


def test_keyed_histogram_combine_counts_every_entry_once():
    rng = np.random.default_rng(3)
    size = 5000
    entries = [HistogramEntries(size, rng.integers(0, size, rng.integers(0, 4000))) for _ in range(30)]
    entries += [None, HistogramEntries(size, np.zeros(0, dtype=np.int64))]
    fn = KeyedHistogramFn()
    expected = np.bincount(np.concatenate([e.codes for e in entries if e is not None]), minlength=size)
    for out in (combine_whole(fn, entries), combine_split(fn, entries, 4)):
        np.testing.assert_array_equal(out.codes, np.flatnonzero(expected))
        np.testing.assert_array_equal(out.counts, expected[out.codes])
    assert len(fn.extract_output(pickle.loads(pickle.dumps(fn.create_accumulator()))).codes) == 0


def _candidates(keys, values, ids, take):
    n = len(keys)
    return SelectionCandidates(np.asarray(keys), np.asarray(values, dtype=np.float64), np.asarray(ids),
                               np.asarray(take), np.zeros(n, dtype=np.uint8), np.zeros(n, dtype=np.int64),
                               np.zeros(n, dtype=np.int64), np.zeros(n), np.zeros(n, dtype=bool),
                               np.zeros(n), np.ones(n))


@pytest.mark.parametrize("string_ids", [False, True])
def test_lowest_per_key_combine_keeps_each_keys_lowest_by_value_then_id(string_ids, monkeypatch):
    monkeypatch.setattr(LowestPerKeyFn, "_MIN_COMPACT_ROWS", 500)  # compact often
    rng = np.random.default_rng(4)
    n = 30000
    keys = rng.integers(0, 50, n)
    values = np.round(rng.random(n), 2)  # many equal values
    ids = rng.permutation(n)
    if string_ids:
        ids = np.array([f"id{i:06d}" for i in ids], dtype=object)
    take_of_key = rng.integers(0, 300, 50)
    parts = [_candidates(keys[i:i + 1000], values[i:i + 1000], ids[i:i + 1000], take_of_key[keys[i:i + 1000]])
             for i in range(0, n, 1000)]
    fn = LowestPerKeyFn(object if string_ids else np.int64)
    expected = ids[cj.lowest_per_key(keys, values, ids, take_of_key)]
    for out in (combine_whole(fn, parts), combine_split(fn, parts, 6)):
        np.testing.assert_array_equal(out.ids, expected)
    assert len(fn.extract_output(fn.create_accumulator())) == 0
    assert len(lowest_entries_per_key(_candidates([], [], np.zeros(0, np.int64), []))) == 0


def test_selected_issues_count_every_row_and_bin_the_issues():
    rng = np.random.default_rng(5)
    parts = []
    for _ in range(10):
        n = int(rng.integers(0, 500))
        parts.append(IssueCandidates(np.arange(n), np.zeros(n, np.int64), np.zeros(n, np.int64), rng.random(n),
                                     rng.random(n) < 0.3, 0, rng.random(n), rng.random(n)))
    scores = np.concatenate([p.scores for p in parts])
    agrees = np.concatenate([p.model_agrees for p in parts])
    for drops in (True, False):
        fn = SelectedIssuesFn(drops, 1024)
        kept = scores[~agrees] if drops else scores
        expected = np.bincount(kernels.score_bins(kept, 1024), minlength=1024)
        for out in (combine_whole(fn, parts), combine_split(fn, parts, 3)):
            assert out.num_selected == len(scores)
            np.testing.assert_array_equal(out.issue_histogram, expected)


# --- options and the summary ----------------------------------------------------------------


def test_options_follow_cleanlabs_rules():
    options = LabelIssuesOptions(3, filter_by="both", num_to_remove_per_class=[1, 0, np.int64(2)], frac_noise=0.5,
                                 min_examples_per_class=0)
    assert options.num_to_remove_per_class == (1, 0, 2) and options.uses_full_method
    assert not LabelIssuesOptions(3).uses_full_method
    refused = [
        dict(filter_by="prune_by_margin"),
        dict(filter_by="both", num_to_remove_per_class=[1, 2]),
        dict(filter_by="both", num_to_remove_per_class=[1, -1, 2]),
        dict(filter_by="both", num_to_remove_per_class="1,2,3"),
        dict(filter_by="confident_learning", num_to_remove_per_class=[1, 1, 1]),
        dict(filter_by="low_self_confidence", frac_noise=0.5),
        dict(filter_by="predicted_neq_given", min_examples_per_class=5),
        dict(frac_noise=0.5),
        dict(num_to_remove_per_class=[1, 1, 1]),
        dict(filter_by="both", frac_noise=1.5),
        dict(filter_by="both", min_examples_per_class=-1),
        dict(filter_by="both", estimation_method="off_diagonal_calibrated"),
        dict(calibration_tie_break="random"),
    ]
    for settings in refused:
        with pytest.raises(ValueError):
            LabelIssuesOptions(3, **settings)


def test_a_summary_of_an_earlier_version_still_parses_with_the_new_keys_empty():
    current = Summary(num_examples=3, num_classes=2, num_label_issues=1, num_issues_estimated=1,
                      confident_thresholds=[0.5, 0.5], examples_per_class=[2, 1], method="self_confidence",
                      adjust_pred_probs=False, estimation_method="off_diagonal", tolerance=1e-4, on_invalid="fail",
                      num_invalid_records=0, issue_score_range=[0.1, 0.1], score_histogram={},
                      filter_by="both", overall_label_health_score=0.75, confident_joint_files=["c.parquet"])
    data = json.loads(current.to_json())
    assert Summary.from_json(json.dumps(data)) == current
    new_keys = {"filter_by", "frac_noise", "num_to_remove_per_class", "min_examples_per_class",
                "calibration_tie_break", "overall_label_health_score", "num_confident_learning_issues",
                "calibration_rounding_ties", "py", "noise_matrix", "inverse_noise_matrix", "confident_joint_files",
                "class_health_files", "overlapping_classes_files", "noise_matrices_files"}
    older = Summary.from_json(json.dumps({key: value for key, value in data.items() if key not in new_keys}))
    assert older.filter_by is None and older.overall_label_health_score is None and older.health_files == []
    assert "c.parquet" in current.output_files


def test_command_line_reads_the_full_methods_options():
    from beam_labelissues import cli

    args, rest = cli.parse_args(["--filter_by", "both", "--num_to_remove_per_class", "3,0,5", "--frac_noise", "0.3",
                                 "--min_examples_per_class", "50", "--calibration_tie_break", "class_index"])
    assert rest == []
    options = cli.label_issues_options(args, 3)
    assert (options.filter_by, options.num_to_remove_per_class, options.frac_noise, options.min_examples_per_class,
            options.calibration_tie_break) == ("both", (3, 0, 5), 0.3, 50, "class_index")
    defaults = cli.label_issues_options(cli.parse_args([])[0], 3)
    assert defaults == LabelIssuesOptions(3)
    with pytest.raises(ValueError, match="one count per class"):
        cli.label_issues_options(args, 4)
    for bad in (["--num_to_remove_per_class", "3,x"], ["--num_to_remove_per_class", "1,-2"], ["--filter_by", "prune"]):
        with pytest.raises(SystemExit):
            cli.parse_args(bad)
