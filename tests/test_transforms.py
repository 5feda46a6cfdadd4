"""The Beam pieces one by one: DoFns called directly on hand-made batches, every
CombineFn and DoFn through pickling, merges fed generators, and small pipelines
built with ``beam.Create`` and checked with ``assert_that``.

The file-based parity and engine suites are the contract; these pin each step.
"""

from __future__ import annotations

import pickle

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.utils.windowed_value import WindowedValue

from datasets import DatasetSpec, make_dataset
from oracle import cleanlab_expected

from beam_labelissues import ExampleBatch, FindLabelIssues, LabelIssuesOptions, RankedIssues
from beam_labelissues import kernels
from beam_labelissues.batches import IssueCandidates, MalformedRow
from beam_labelissues.combiners import (
    NUM_SCORE_BINS,
    ConfidentThresholdsFn,
    IssueCountFn,
    IssueTotals,
    IssueTotalsFn,
    LowestScoresFn,
)
from beam_labelissues.transforms import (
    MarkLabelIssues,
    RankIssueRange,
    ScoreLabelQuality,
    SelectIssueCandidates,
    ValidateExamples,
    _issue_cut,
)
from beam_labelissues.validation import InvalidRecordError

K = 4


def _batches(n=2000, k=K, size=300, seed=0):
    labels, probs = make_dataset(DatasetSpec(n, k, "float32", "int64", 0.2, seed=seed))
    return [ExampleBatch(np.arange(i, min(i + size, n)), labels[i:i + size], probs[i:i + size])
            for i in range(0, n, size)], labels, probs


def _stats(batches, options):
    thresholds_fn = ConfidentThresholdsFn(options.num_classes)
    acc = thresholds_fn.create_accumulator()
    for b in batches:
        acc = thresholds_fn.add_input(acc, b)
    threshold_stats = thresholds_fn.extract_output(acc)
    score = ScoreLabelQuality(options)
    scored = [next(iter(score.process(b, threshold_stats))) for b in batches]
    count_fn = IssueCountFn(options.num_classes)
    acc = count_fn.create_accumulator()
    for s in scored:
        acc = count_fn.add_input(acc, s)
    return threshold_stats, scored, count_fn.extract_output(acc)


# --- pickling: every DoFn and CombineFn travels to workers --------------------------------


@pytest.mark.parametrize(
    "fn",
    [
        ConfidentThresholdsFn(K),
        IssueCountFn(K),
        LowestScoresFn(np.int64),
        IssueTotalsFn(),
        ValidateExamples(LabelIssuesOptions(K), "Stage", True),
        ScoreLabelQuality(LabelIssuesOptions(K, method="normalized_margin")),
        SelectIssueCandidates(),
        RankIssueRange(pa.string(), ("a", "b", "c", "d")),
        MarkLabelIssues(pa.int64(), None),
    ],
    ids=lambda fn: type(fn).__name__,
)
def test_every_fn_survives_pickling(fn):
    copy = pickle.loads(pickle.dumps(fn))
    assert type(copy) is type(fn) and vars(copy).keys() == vars(fn).keys()


# --- combiners: merging a generator, as runners do ----------------------------------------


def test_merge_accumulators_takes_a_generator():
    batches, labels, _ = _batches()
    options = LabelIssuesOptions(K)
    thresholds_fn = ConfidentThresholdsFn(K)
    parts = [thresholds_fn.add_input(thresholds_fn.create_accumulator(), b) for b in batches]
    merged = thresholds_fn.merge_accumulators(p for p in parts)
    np.testing.assert_array_equal(thresholds_fn.extract_output(merged).examples_per_class,
                                  np.bincount(labels, minlength=K))
    _, scored, counts = _stats(batches, options)
    count_fn = IssueCountFn(K)
    merged = count_fn.merge_accumulators(count_fn.add_input(count_fn.create_accumulator(), s) for s in scored)
    np.testing.assert_array_equal(count_fn.extract_output(merged).score_histogram, counts.score_histogram)
    totals = IssueTotalsFn().merge_accumulators(t for t in [IssueTotals(2, 0.1, 0.3), IssueTotals(1, 0.05, 0.2)])
    assert (totals.num_issues, totals.min_score, totals.max_score) == (3, 0.05, 0.3)
    lowest = LowestScoresFn()
    scores = np.array([0.5, 0.1, 0.4, 0.1, 0.2])
    candidates = IssueCandidates(np.arange(5), np.zeros(5, int), np.ones(5, int), scores, np.zeros(5, bool), 3,
                                 scores, 1 - scores)
    merged = lowest.merge_accumulators(a for a in [lowest.add_input([], candidates), []])
    assert lowest.extract_output(merged).ids.tolist() == [1, 3, 4]


# --- DoFns called directly ------------------------------------------------------------------


def test_validate_examples_fails_or_sets_aside_and_reports_only_where_asked():
    batch = ExampleBatch(np.arange(3), np.array([0, 7, 1]), np.full((3, K), 0.25),
                         malformed=(MalformedRow(99, "label is null", None, None),))
    skip = ValidateExamples(LabelIssuesOptions(K, on_invalid="skip"), "Stage", report_invalid=True)
    skip.setup()
    out = list(skip.process(batch))
    valid = [o for o in out if isinstance(o, ExampleBatch)]
    invalid = [o.value for o in out if isinstance(o, beam.pvalue.TaggedOutput)]
    assert valid[0].ids.tolist() == [0, 2]
    assert [r["id"] for r in invalid] == [99, 1]
    silent = ValidateExamples(LabelIssuesOptions(K, on_invalid="skip"), "Stage", report_invalid=False)
    silent.setup()
    assert all(isinstance(o, ExampleBatch) for o in silent.process(batch))
    fail = ValidateExamples(LabelIssuesOptions(K), "Stage", report_invalid=True)
    fail.setup()
    with pytest.raises(InvalidRecordError, match="invalid record id=99: label is null"):
        list(fail.process(batch))


def test_issue_cut_takes_the_estimated_number_from_the_cutoff_bin():
    batches, labels, probs = _batches(seed=3)
    options = LabelIssuesOptions(K)
    threshold_stats, _, counts = _stats(batches, options)
    cut = _issue_cut(counts, threshold_stats, "off_diagonal", max_issues_per_range=50)
    expected = cleanlab_expected(labels, probs)
    assert cut.num_issues == expected.num_issues
    below = int(counts.score_histogram[:cut.cutoff_bin].sum())
    assert below < cut.num_issues <= below + int(counts.score_histogram[cut.cutoff_bin])
    assert cut.take_from_cutoff_bin == cut.num_issues - below
    assert cut.num_ranges == len(cut.range_first_bins) > 1
    assert list(cut.range_offsets) == sorted(cut.range_offsets) and cut.range_offsets[0] == 0
    empty = _issue_cut(IssueCountFn(K).extract_output(IssueCountFn(K).create_accumulator()),
                       ConfidentThresholdsFn(K).extract_output(ConfidentThresholdsFn(K).create_accumulator()),
                       "off_diagonal", 50)
    assert (empty.num_issues, empty.cutoff_bin, empty.num_ranges) == (0, -1, 1)


def test_select_and_rank_give_the_issues_of_the_oracle():
    """SelectIssueCandidates (with finish_bundle) -> group by range -> LowestScoresFn ->
    RankIssueRange, by hand, equals cleanlab's ranked issues."""
    batches, labels, probs = _batches(n=3000, seed=4)
    options = LabelIssuesOptions(K)
    threshold_stats, scored, counts = _stats(batches, options)
    cut = _issue_cut(counts, threshold_stats, "off_diagonal", max_issues_per_range=40)
    select = SelectIssueCandidates()
    select.start_bundle()
    emitted = []
    for s in scored:
        emitted.extend(select.process(s, cut))
    finished = list(select.finish_bundle())
    assert all(isinstance(w, WindowedValue) for w in finished)
    boundary_parts = [e.value for e in emitted if isinstance(e, beam.pvalue.TaggedOutput)]
    sure = [e for e in emitted if not isinstance(e, beam.pvalue.TaggedOutput)] + [w.value for w in finished]
    # The last range always gets a part from the bundle, so its file always exists.
    assert cut.num_ranges - 1 in {key for key, _ in sure}
    lowest = LowestScoresFn()
    acc = lowest.create_accumulator()
    for part in boundary_parts:
        acc = lowest.add_input(acc, part)
    boundary = lowest.extract_output(acc)
    assert len(boundary) == cut.take_from_cutoff_bin
    by_range = {}
    for key, part in sure:
        by_range.setdefault(key, []).append(part)
    rank = RankIssueRange(pa.int64(), None)
    tables = [next(iter(rank.process((key, parts), cut, boundary))) for key, parts in sorted(by_range.items())]
    assert all(isinstance(t, RankedIssues) for t in tables)
    table = pa.concat_tables([t.table for t in tables])
    assert table.column("rank").to_pylist() == list(range(table.num_rows))
    expected = cleanlab_expected(labels, probs)
    assert table.column("id").to_pylist() == expected.issue_ids.tolist()

    mark = MarkLabelIssues(pa.int64(), None)
    flagged = [i for s in scored for t in mark.process(s, cut, boundary)
               for i, flag in zip(t.column("id").to_pylist(), t.column("is_label_issue").to_pylist()) if flag]
    assert sorted(flagged) == sorted(expected.issue_ids.tolist())


# --- small pipelines ----------------------------------------------------------------------


def test_find_label_issues_on_created_batches():
    batches, labels, probs = _batches(n=1500, size=200, seed=5)
    expected = cleanlab_expected(labels, probs)
    with BeamTestPipeline(runner="FnApiRunner") as pipeline:
        result = (pipeline | beam.Create(batches, reshuffle=False)
                  | FindLabelIssues(LabelIssuesOptions(K, max_issues_per_worker=25)))
        ids = result.issues | beam.FlatMap(lambda ranked: ranked.table.column("id").to_pylist())
        ranks = result.issues | "Ranks" >> beam.FlatMap(
            lambda ranked: zip(ranked.table.column("rank").to_pylist(), ranked.table.column("id").to_pylist()))
        assert_that(ids, equal_to(expected.issue_ids.tolist()), label="IssueSet")
        assert_that(ranks, equal_to(list(enumerate(expected.issue_ids.tolist()))), label="Ranks")
        counts = result.summary | beam.Map(lambda s: (s.num_examples, s.num_issues_estimated, s.num_label_issues))
        assert_that(counts, equal_to([(1500, expected.num_issues, len(expected.issue_ids))]), label="Summary")


def test_find_label_issues_on_empty_input_still_gives_a_summary():
    with BeamTestPipeline(runner="FnApiRunner") as pipeline:
        empty = pipeline | beam.Create([], reshuffle=False).with_output_types(ExampleBatch)
        result = empty | FindLabelIssues(3, with_scores=True)
        assert_that(result.summary | beam.Map(lambda s: (s.num_examples, s.num_label_issues)), equal_to([(0, 0)]))


def test_options_are_checked_when_the_transform_is_built():
    with pytest.raises(ValueError, match="num_classes must be an integer >= 2"):
        FindLabelIssues(1)
    with pytest.raises(ValueError, match="adjust_pred_probs is not supported"):
        FindLabelIssues(3, method="confidence_weighted_entropy", adjust_pred_probs=True)
    with pytest.raises(ValueError, match="got 2 class names for 3 classes"):
        FindLabelIssues(3, class_names=["a", "b"])
    with pytest.raises(TypeError):
        FindLabelIssues("three")
    options = LabelIssuesOptions(3, method="normalized_margin")
    assert FindLabelIssues(options, with_scores=True).options == LabelIssuesOptions(
        3, method="normalized_margin", with_scores=True)
    assert NUM_SCORE_BINS == 1 << 16 and kernels.METHODS[0] == "self_confidence"
