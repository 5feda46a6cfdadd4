"""Beam transforms that compose the kernels into confident learning over a PCollection.

``FindLabelIssues`` is the public entry point; the DoFns here each do one step:
validate, score with the thresholds as a side input, select issue candidates,
rank them, mark every example. The passes that need the thresholds or the
issue count read the source again rather than hold it: a PCollection that
feeds both a combine and a step waiting on that combine's result would be
held whole in memory by the local runner (see "How it works" in README.md).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any, NamedTuple, Optional, Sequence, Tuple, Union

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindows

from beam_labelissues import coders  # noqa: F401  registers the coders of the batch types
from beam_labelissues import full_method, kernels, runners, tables
from beam_labelissues.batches import DisagreeingRows, ExampleBatch, IssueCandidates, ScoredBatch
from beam_labelissues.combiners import (
    NUM_SCORE_BINS,
    ConfidentThresholdsFn,
    IssueCountFn,
    IssueCountStats,
    IssueTotals,
    IssueTotalsFn,
    LowestScoresFn,
    ScoreHistogram,
    ScoreHistogramFn,
    SumCountsFn,
    ThresholdStats,
)
from beam_labelissues.duplicates import CheckUniqueCandidateIds
from beam_labelissues.io.outputs import Summary
from beam_labelissues.options import LabelIssuesOptions
from beam_labelissues.score_ranges import GatherByScoreRange
from beam_labelissues.validation import invalid_record_error, validate_batch

NAMESPACE = "beam_labelissues"
_LOG = logging.getLogger(__name__)


class RankedIssues(NamedTuple):
    """One score range's issues, ranked: an element of ``LabelIssuesResult.issues``.

    ``table`` has the ``label_issues`` schema (see tables.py) and global ranks;
    ranges are numbered from the most severe, ``num_ranges`` in all.
    """

    range_index: int
    num_ranges: int
    table: pa.Table


@dataclasses.dataclass(frozen=True)
class IssueCut:
    """What the ranking pass needs from the count pass.

    The ``num_issues`` lowest rows by (score, id) are every row in score bins
    below ``cutoff_bin`` and the ``take_from_cutoff_bin`` lowest of that bin. The
    issues among them are ranked in score ranges, each on its own worker, that
    start at ``range_first_bins``, the first rank of range r being
    ``range_offsets[r]``; the last range also takes the cutoff bin's issues. With
    no issue below the cutoff bin, that bin alone is the one range.
    """

    num_issues: int
    cutoff_bin: int
    num_bins: int
    take_from_cutoff_bin: int
    range_first_bins: Tuple[int, ...]
    range_offsets: Tuple[int, ...]

    @property
    def num_ranges(self) -> int:
        return max(1, len(self.range_first_bins))

    def range_of(self, bins: np.ndarray) -> np.ndarray:
        return np.searchsorted(np.asarray(self.range_first_bins), bins, side="right") - 1


class _Progress:
    """Counts rows in a Beam counter and logs them with the rate every few seconds."""

    def __init__(self, stage: str, interval_s: float = 5.0):
        self._stage = stage
        self._interval_s = interval_s
        self._counter = Metrics.counter(NAMESPACE, f"{stage}_rows")
        self._rows = 0
        self._start = self._last = time.monotonic()

    def update(self, rows: int) -> None:
        self._counter.inc(rows)
        self._rows += rows
        now = time.monotonic()
        if now - self._last >= self._interval_s:
            self._last = now
            rate = self._rows / max(now - self._start, 1e-9)
            _LOG.info("%s: %s rows so far in this worker, %.0f rows/s", self._stage, f"{self._rows:,}", rate)


@beam.typehints.with_output_types(ExampleBatch)
class ValidateExamples(beam.DoFn):
    """Applies the validation rule; fails on the first invalid record or sets it aside.

    With ``on_invalid='skip'`` the invalid records go to the ``invalid`` output,
    but only from the pass that reports them, so each is written and counted once.
    With ``id_type``, a batch whose ids are of the other kind (strings for int64,
    integers for string) stops the run at once with the fix, not at ranking.
    """

    INVALID = "invalid"

    def __init__(
        self, options: LabelIssuesOptions, stage: str, report_invalid: bool, id_type: Optional[pa.DataType] = None
    ):
        self._options = options
        self._stage = stage
        self._report_invalid = report_invalid
        self._string_ids = None if id_type is None else not pa.types.is_integer(id_type)

    def setup(self):
        self._progress = _Progress(self._stage)
        self._invalid_counter = Metrics.counter(NAMESPACE, "invalid_records")

    def process(self, batch: ExampleBatch):
        if self._string_ids is not None and len(batch.ids):
            _check_id_kind(batch.ids, self._string_ids)
        valid, invalid = validate_batch(
            batch, self._options.num_classes, self._options.tolerance, self._options.row_sum_tolerance
        )
        self._progress.update(len(batch) + len(batch.malformed))
        if invalid:
            if self._options.on_invalid == "fail":
                raise invalid_record_error(invalid)
            if self._report_invalid:
                self._invalid_counter.inc(len(invalid))
                for record in invalid:
                    yield beam.pvalue.TaggedOutput(self.INVALID, record)
        if len(valid):
            yield valid


def _check_id_kind(ids: np.ndarray, string_ids: bool) -> None:
    integer_ids = ids.dtype.kind in "iu"
    if string_ids and integer_ids:
        raise TypeError(f"example ids are integers ({ids[0]!r}, ...), but id_type is string: pass id_type=pa.int64()")
    if not string_ids and not integer_ids:
        raise TypeError(
            f"example ids are not integers ({ids[0]!r}, ...), but id_type is int64: pass id_type=pa.string() "
            "for string ids"
        )


@beam.typehints.with_output_types(ScoredBatch)
class ScoreLabelQuality(beam.DoFn):
    """Scores each example's label with the confident thresholds as a side input.

    ``with_predictions`` adds every row's predicted class, whether it clears its
    threshold and whether the model agrees with the label, which the count
    needs; the ranking pass skips that argmax over all rows and predicts only
    its few candidates.
    """

    def __init__(self, options: LabelIssuesOptions, with_predictions: bool = True):
        self._options = options
        self._with_predictions = with_predictions

    def process(self, batch: ExampleBatch, threshold_stats: ThresholdStats):
        thresholds = threshold_stats.thresholds
        scores = kernels.label_quality_scores(
            batch.labels,
            batch.pred_probs,
            thresholds,
            method=self._options.method,
            adjust=self._options.adjust_pred_probs,
        )
        if not self._with_predictions:
            yield ScoredBatch(batch, None, scores, None)
            return
        predicted, top_prob, agrees = kernels.predictions(batch.labels, batch.pred_probs)
        confident = kernels.confident_predictions(top_prob, predicted, thresholds)
        yield ScoredBatch(batch, predicted, scores, confident, agrees)


@beam.typehints.with_output_types(ScoredBatch)
class ScanExamples(beam.DoFn):
    """Scores every row without the thresholds and sets aside the rows the model disagrees with.

    Without ``adjust_pred_probs`` no score depends on the thresholds, so the first
    pass can score: its main output feeds the thresholds and the histogram of all
    scores, and the ``disagreeing`` output holds the rows whose predicted class is
    not the given label (``DisagreeingRows``), gathered over the bundle. Every
    label issue and every row the ``off_diagonal`` count counts is among them, so
    the count and the ranking need no second read of the data.
    """

    DISAGREEING = "disagreeing"
    _FLUSH_ROWS = 1 << 20

    def __init__(self, options: LabelIssuesOptions):
        if options.adjust_pred_probs:
            raise ValueError("with adjust_pred_probs the scores need the thresholds: score after the first pass")
        self._options = options

    def start_bundle(self):
        self._parts = []
        self._rows = 0

    def process(self, batch: ExampleBatch):
        scores = kernels.label_quality_scores(batch.labels, batch.pred_probs, None, method=self._options.method)
        predicted, top_prob, agrees = kernels.predictions(batch.labels, batch.pred_probs)
        yield ScoredBatch(batch, predicted, scores, None, agrees, top_prob)
        rows = np.flatnonzero(predicted != batch.labels)
        if len(rows):
            class_dtype = kernels.class_index_dtype(batch.num_classes)
            self._parts.append(DisagreeingRows(
                ids=kernels.narrow_integers(batch.ids[rows]),
                given=batch.labels[rows].astype(class_dtype),
                predicted=predicted[rows].astype(class_dtype),
                given_prob=batch.pred_probs[rows, batch.labels[rows]],
                predicted_prob=top_prob[rows],
                scores=scores[rows],
                model_agrees=agrees[rows],
            ))
            self._rows += len(rows)
        if self._rows >= self._FLUSH_ROWS:
            yield beam.pvalue.TaggedOutput(self.DISAGREEING, self._gathered())

    def _gathered(self) -> DisagreeingRows:
        rows = DisagreeingRows.concatenate(self._parts)
        self._parts, self._rows = [], 0
        return rows

    def finish_bundle(self):
        if self._parts:
            yield beam.pvalue.TaggedOutput(self.DISAGREEING, GlobalWindows.windowed_value(self._gathered()))


class CountHeldRows(beam.DoFn):
    """Per given class, the disagreeing rows whose prediction clears its threshold (the
    ``off_diagonal`` count), and the histogram of the scores of those that can be issues."""

    def __init__(self, num_classes: int, num_bins: int = NUM_SCORE_BINS):
        self._num_classes = num_classes
        self._num_bins = num_bins

    def process(self, rows: DisagreeingRows, threshold_stats: ThresholdStats):
        confident = kernels.confident_predictions(rows.predicted_prob, rows.predicted, threshold_stats.thresholds)
        prune_counts = np.bincount(rows.given[confident], minlength=self._num_classes).astype(np.int64)
        possible = kernels.score_bins(rows.scores[~rows.model_agrees], self._num_bins)
        yield prune_counts, np.bincount(possible, minlength=self._num_bins).astype(np.int64)


class SelectAgreeingRowsOfCutoffBin(beam.DoFn):
    """The rows of the cutoff bin whose predicted class is the given label.

    They are never issues, but they compete for the ``num_issues`` lowest scores
    with the disagreeing rows of that bin, so the bottom-n of the bin needs them.
    Only the rows of one bin are predicted; the pass costs a read and a score.
    """

    def __init__(self, options: LabelIssuesOptions, num_bins: int = NUM_SCORE_BINS):
        self._options = options
        self._num_bins = num_bins

    def process(self, batch: ExampleBatch, cut: "IssueCut"):
        if cut.cutoff_bin < 0 or cut.take_from_cutoff_bin <= 0:
            return
        scores = kernels.label_quality_scores(batch.labels, batch.pred_probs, None, method=self._options.method)
        rows = np.flatnonzero(kernels.score_bins(scores, self._num_bins) == cut.cutoff_bin)
        if len(rows) == 0:
            return
        rows = rows[kernels.predicted_labels(batch.pred_probs[rows]) == batch.labels[rows]]
        if len(rows):
            labels = batch.labels[rows].astype(kernels.class_index_dtype(batch.num_classes))
            label_prob = batch.pred_probs[rows, batch.labels[rows]]
            yield IssueCandidates(
                ids=kernels.narrow_integers(batch.ids[rows]), given=labels, predicted=labels, scores=scores[rows],
                model_agrees=np.ones(len(rows), dtype=bool), keep_lowest=cut.take_from_cutoff_bin,
                given_prob=label_prob, predicted_prob=label_prob,
            )


def _candidates(examples: ExampleBatch, rows: np.ndarray, scores: np.ndarray, keep_lowest: int) -> IssueCandidates:
    labels = examples.labels[rows]
    probs = examples.pred_probs[rows]
    predicted, top_prob, agrees = kernels.predictions(labels, probs)
    # Candidates are shuffled and held for ranking: the narrowest class dtype keeps them small.
    class_dtype = kernels.class_index_dtype(examples.num_classes)
    return IssueCandidates(
        ids=kernels.narrow_integers(examples.ids[rows]),
        given=labels.astype(class_dtype),
        predicted=predicted.astype(class_dtype),
        scores=scores[rows],
        model_agrees=agrees,
        keep_lowest=keep_lowest,
        given_prob=probs[np.arange(len(rows)), labels],
        predicted_prob=top_prob,
    )


class SelectIssueCandidates(GatherByScoreRange):
    """Keeps the rows that can be issues, keyed by the score range that ranks them.

    The input is either scored batches (the data read again) or the held
    ``DisagreeingRows``. Rows in bins below the cutoff bin are among the n lowest for sure: only
    those the model disagrees with are kept, gathered per bundle (see ``score_ranges``).
    Every row of the cutoff bin goes to the ``boundary`` output, where a bottom-n combiner
    picks the lowest.
    """

    BOUNDARY = "boundary"

    def process(self, element: Union[ScoredBatch, DisagreeingRows], cut: IssueCut):
        held = isinstance(element, DisagreeingRows)
        self.note_bundle(cut.num_ranges, IssueCandidates.empty((element.ids if held else element.examples.ids).dtype))
        if cut.cutoff_bin < 0:
            return
        bins = kernels.score_bins(element.scores, cut.num_bins)
        rows = np.flatnonzero(bins <= cut.cutoff_bin)
        if len(rows) == 0:
            return
        if held:
            candidates = element.candidates(rows, cut.take_from_cutoff_bin)
        else:
            candidates = _candidates(element.examples, rows, element.scores, cut.take_from_cutoff_bin)
        in_cutoff_bin = bins[rows] == cut.cutoff_bin
        if in_cutoff_bin.any():
            yield beam.pvalue.TaggedOutput(self.BOUNDARY, candidates.take(np.flatnonzero(in_cutoff_bin)))
        sure = np.flatnonzero(~in_cutoff_bin & ~candidates.model_agrees)
        if len(sure):
            yield from self.gather(candidates.take(sure), cut.range_of(bins[rows[sure]]))


def _ranked(parts: Sequence[IssueCandidates], id_dtype: Any) -> IssueCandidates:
    parts = [part for part in parts if len(part)]
    if not parts:
        return IssueCandidates.empty(id_dtype)
    issues = IssueCandidates.concatenate(parts)
    return issues.take(kernels.order_by_score_then_id(issues.scores, issues.ids))


class RankIssueRange(beam.DoFn):
    """Sorts one score range's issues by (score, id) and gives them their global ranks."""

    def __init__(self, id_type: pa.DataType, class_names: Optional[Sequence[str]]):
        self._id_type = id_type
        self._class_names = class_names

    def process(self, keyed_parts, cut: IssueCut, boundary: IssueCandidates):
        range_index, parts = keyed_parts
        parts = list(parts)
        if range_index == cut.num_ranges - 1:
            parts.append(boundary.take(np.flatnonzero(~boundary.model_agrees)))
        issues = _ranked(parts, object)
        first_rank = cut.range_offsets[range_index] if cut.range_offsets else 0
        table = tables.label_issues_table(issues, self._id_type, self._class_names, first_rank=first_rank)
        yield RankedIssues(range_index, cut.num_ranges, table)


class MarkLabelIssues(beam.DoFn):
    """Writes every example's score and whether it is an issue, as an Arrow table."""

    def __init__(self, id_type: pa.DataType, class_names: Optional[Sequence[str]]):
        self._id_type = id_type
        self._class_names = class_names

    def process(self, scored: ScoredBatch, cut: IssueCut, boundary: IssueCandidates):
        examples = scored.examples
        bins = kernels.score_bins(scored.scores, cut.num_bins)
        lowest = bins < cut.cutoff_bin
        if len(boundary):
            last_score, last_id = boundary.scores[-1], boundary.ids[-1]
            lowest |= (bins == cut.cutoff_bin) & (
                (scored.scores < last_score) | ((scored.scores == last_score) & (examples.ids <= last_id))
            )
        yield tables.label_quality_scores_table(
            examples.ids,
            examples.labels,
            scored.predicted,
            scored.scores,
            lowest & ~scored.model_agrees,
            self._id_type,
            self._class_names,
        )


def _held_count_stats(held_counts, threshold_stats: ThresholdStats, score_histogram: ScoreHistogram) -> IssueCountStats:
    """The count stats of the held-rows path: only the ``off_diagonal`` estimate is counted."""
    prune_counts, issue_histogram = held_counts
    return IssueCountStats(
        prune_counts=prune_counts,
        normalization=None,
        class_counts=threshold_stats.examples_per_class,
        score_histogram=score_histogram.counts,
        issue_histogram=issue_histogram,
    )


def _issue_cut(
    stats: IssueCountStats, threshold_stats: ThresholdStats, estimation_method: str, max_issues_per_range: int
) -> IssueCut:
    """Where the ``num_issues`` lowest scores end, and the score ranges that rank the issues."""
    num_issues = min(stats.num_issues(estimation_method), threshold_stats.num_examples)
    last_bin = kernels.cutoff_bin(stats.score_histogram, num_issues)
    below = int(stats.score_histogram[:last_bin].sum()) if last_bin > 0 else 0
    ranges = kernels.plan_rank_ranges(stats.issue_histogram, last_bin, max_issues_per_range)
    return IssueCut(
        num_issues=num_issues,
        cutoff_bin=last_bin,
        num_bins=len(stats.score_histogram),
        take_from_cutoff_bin=num_issues - below if last_bin >= 0 else 0,
        range_first_bins=tuple(first for first, _ in ranges),
        range_offsets=tuple(offset for _, offset in ranges),
    )


def _issue_cut_logged(*args) -> IssueCut:
    cut = _issue_cut(*args)
    _LOG.info(
        "estimated number of label issues: %s; ranking them in %d score range(s)",
        f"{cut.num_issues:,}",
        cut.num_ranges,
    )
    return cut


def _summary(
    totals: IssueTotals,
    threshold_stats: ThresholdStats,
    count_stats: IssueCountStats,
    cut: IssueCut,
    num_invalid: int,
    options: LabelIssuesOptions,
    class_names: Optional[Sequence[str]],
    input_description: Optional[str],
    health: "full_method.DatasetHealth",
) -> Summary:
    histogram = count_stats.summary_histogram()
    return Summary(
        num_examples=threshold_stats.num_examples,
        num_classes=options.num_classes,
        num_label_issues=totals.num_issues,
        num_issues_estimated=cut.num_issues,
        confident_thresholds=threshold_stats.thresholds.tolist(),
        examples_per_class=threshold_stats.examples_per_class.tolist(),
        method=options.method,
        adjust_pred_probs=options.adjust_pred_probs,
        estimation_method=options.estimation_method,
        tolerance=options.tolerance,
        row_sum_tolerance=options.row_sum_tolerance,
        on_invalid=options.on_invalid,
        threshold_sample_fraction=options.threshold_sample_fraction,
        num_invalid_records=int(num_invalid),
        issue_score_range=totals.score_range(),
        score_histogram={
            "bin_edges": np.linspace(0.0, 1.0, len(histogram) + 1).tolist(),
            "counts": histogram.tolist(),
        },
        class_names=list(class_names) if class_names is not None else None,
        input=input_description,
        filter_by=options.filter_by,
        frac_noise=options.frac_noise,
        num_to_remove_per_class=(list(options.num_to_remove_per_class)
                                 if options.num_to_remove_per_class is not None else None),
        min_examples_per_class=options.min_examples_per_class,
        calibration_tie_break=options.calibration_tie_break,
        **health.summary_fields(),
    )


def _check_batch_element_type(pcoll: beam.PCollection) -> None:
    """Fails when the pipeline is built if Beam knows the elements are not ExampleBatch."""
    element_type = pcoll.element_type
    if element_type is None or beam.typehints.typehints.is_consistent_with(element_type, ExampleBatch):
        return
    raise TypeError(
        f"FindLabelIssues takes a PCollection of ExampleBatch (whole batches), but its elements are "
        f"{element_type}. For one element per example (dicts, beam.Row, RunInference's "
        "PredictionResult) use FindLabelIssuesInExamples(num_classes, id_field=..., label_field=..., "
        "pred_probs_field=...) instead, or ExamplesToBatches before FindLabelIssues."
    )


@dataclasses.dataclass(frozen=True)
class LabelIssuesResult:
    """What ``FindLabelIssues`` produces: PCollections, and what a writer needs to know of them.

    Attributes:
      issues: ``RankedIssues`` elements, one per score range; none only when the
        input has no valid example.
      scores: ``pyarrow.Table`` batches of every example's score and issue flag
        (schema ``label_quality_scores_schema``), or None unless ``with_scores``.
      summary: one ``Summary``, the content of summary.json without its file lists.
      invalid_records: dicts (id, reason, label, pred_probs) with
        ``on_invalid='skip'``, else None.
      health: the dataset's health (``full_method.LabelHealth``): the calibrated
        confident joint, the class and overlap tables and, with more than 100
        classes, the noise matrices, each a PCollection of one ``pyarrow.Table``.
      id_type: the Arrow type of the ids in the tables.
      class_names: the class names, when given.
      options: the settings the issues were found with.

    Write it all with ``result | WriteLabelIssues(output_dir)``.
    """

    issues: beam.PCollection
    scores: Optional[beam.PCollection]
    summary: beam.PCollection
    invalid_records: Optional[beam.PCollection]
    id_type: pa.DataType
    class_names: Optional[Tuple[str, ...]]
    options: LabelIssuesOptions
    health: Optional[full_method.LabelHealth] = None


class FindLabelIssues(beam.PTransform):
    """Finds label issues with confident learning, as cleanlab's ``find_label_issues_batched``,
    or with ``filter_by`` as ``cleanlab.filter.find_label_issues`` (``full_method.py``); every
    run also finds the dataset's health (``LabelIssuesResult.health``).

    Apply it to a PCollection of ``ExampleBatch``, or to the pipeline itself with
    ``source=`` an ``ExampleSource`` (``ReadNpyExamples``, ``ReadParquetExamples``):
    then each pass reads the source again, so nothing of the dataset's size is
    held in memory between passes.

    Example::

        result = pipeline | FindLabelIssues(num_classes=10, source=ReadNpyExamples(pair))
        result | WriteLabelIssues("label_issues_output")

    Args:
      options: a ``LabelIssuesOptions``, or the number of classes K; settings not
        given take the defaults of ``LabelIssuesOptions``.
      source: an ``ExampleSource`` to read once per pass; then apply the transform
        to the pipeline rather than to a PCollection.
      id_type: the Arrow type of the ids (``pa.int64()`` or ``pa.string()``).
        Default: the source's id type, else int64.
      class_names: one name per class, for the name columns of the tables and
        the summary.
      label: the transform's label.
      **settings: any field of ``LabelIssuesOptions`` (``num_classes``, ``method``,
        ``adjust_pred_probs``, ``estimation_method``, ``tolerance``, ``row_sum_tolerance``,
        ``on_invalid``, ``threshold_sample_fraction``, ``with_scores``, ``max_issues_per_worker``,
        ``hold_disagreeing_rows``, ``example_uri_template``, ``filter_by``, ``frac_noise``,
        ``num_to_remove_per_class``, ``min_examples_per_class``, ``calibration_tie_break``),
        overriding ``options``.
    """

    def __init__(
        self,
        options: Union[LabelIssuesOptions, int, None] = None,
        *,
        source: Optional[beam.PTransform] = None,
        id_type: Optional[pa.DataType] = None,
        class_names: Optional[Sequence[str]] = None,
        label: Optional[str] = None,
        **settings: Any,
    ):
        super().__init__(label)
        if isinstance(options, LabelIssuesOptions):
            options = dataclasses.replace(options, **settings) if settings else options
        elif options is None or isinstance(options, (int, np.integer)):
            if options is not None:
                settings = dict(settings, num_classes=options)
            options = LabelIssuesOptions(**settings)
        else:
            raise TypeError(f"options must be a LabelIssuesOptions or the number of classes, got {options!r}")
        self._options = options
        if class_names is not None and len(class_names) != options.num_classes:
            raise ValueError(f"got {len(class_names)} class names for {options.num_classes} classes")
        self._class_names = tuple(class_names) if class_names is not None else None
        self._source = source
        if id_type is None:
            id_type = getattr(source, "id_type", None) or pa.int64()
        self._id_type = id_type

    @property
    def options(self) -> LabelIssuesOptions:
        return self._options

    def _reader(self, pinput):
        """A function giving each pass its raw ``ExampleBatch`` PCollection.

        With a source, every pass reads the files again, its task list included:
        a task list shared by the passes would let the runner fuse all reads into
        one stage and hold the later passes' batches until their side inputs are
        ready, the whole dataset in memory.
        """
        if self._source is None:
            if not isinstance(pinput, beam.PCollection):
                raise TypeError("apply FindLabelIssues to a PCollection of ExampleBatch, or give source=")
            _check_batch_element_type(pinput)
            return lambda stage: pinput
        if not isinstance(pinput, beam.pvalue.PBegin):
            raise TypeError("with source=, apply FindLabelIssues to the pipeline, not a PCollection")
        return lambda stage: pinput | f"Read{stage}" >> self._source

    def _validated(self, raw, stage: str, report_invalid: bool):
        outputs = raw | f"Validate{stage}" >> beam.ParDo(
            ValidateExamples(self._options, stage, report_invalid, self._id_type)
        ).with_outputs(ValidateExamples.INVALID, main="valid")
        return outputs.valid, outputs[ValidateExamples.INVALID]

    def _empty_results(self, id_dtype):
        """What each global step gives on empty input, so its side input has a value.

        The combines run ``without_defaults()``: a default costs every combine two
        extra stages, while these values are known when the pipeline is built.
        """
        k = self._options.num_classes
        thresholds_fn = ConfidentThresholdsFn(k, self._options.threshold_sample_fraction)
        thresholds = thresholds_fn.extract_output(thresholds_fn.create_accumulator())
        counts_fn = IssueCountFn(k, NUM_SCORE_BINS)
        counts = counts_fn.extract_output(counts_fn.create_accumulator())
        cut = _issue_cut(counts, thresholds, self._options.estimation_method, self._options.max_issues_per_worker)
        return thresholds, counts, cut, IssueCandidates.empty(id_dtype), IssueTotals()

    def _cut(self, count_stats, thresholds_side, no_cut):
        cut = count_stats | "IssueCut" >> beam.Map(
            _issue_cut_logged, thresholds_side, self._options.estimation_method, self._options.max_issues_per_worker
        )
        return beam.pvalue.AsSingleton(cut, default_value=no_cut)

    def _count_from_held_rows(self, valid, examples_of, no_thresholds, no_counts, no_cut, id_dtype):
        """The first pass scores every row and holds the rows the model disagrees with;
        the count and the candidates come from those, and a second pass only fetches
        the agreeing rows of the cutoff bin (see ``ScanExamples``)."""
        options = self._options
        k = options.num_classes
        scanned = valid | "ScanExamples" >> beam.ParDo(ScanExamples(options)).with_outputs(
            ScanExamples.DISAGREEING, main="scored"
        )
        threshold_stats = (
            scanned.scored
            | "ExamplesOfScanned" >> beam.Map(lambda scored: scored.examples)
            | "ConfidentThresholds" >> beam.CombineGlobally(
                ConfidentThresholdsFn(k, options.threshold_sample_fraction)
            ).without_defaults()
        )
        thresholds_side = beam.pvalue.AsSingleton(threshold_stats, default_value=no_thresholds)
        score_histogram = scanned.scored | "ScoreHistogram" >> beam.CombineGlobally(
            ScoreHistogramFn(NUM_SCORE_BINS)
        ).without_defaults()
        held = scanned[ScanExamples.DISAGREEING]
        count_stats = (
            held
            | "CountHeldRows" >> beam.ParDo(CountHeldRows(k, NUM_SCORE_BINS), thresholds_side)
            | "SumHeldCounts" >> beam.CombineGlobally(SumCountsFn([k, NUM_SCORE_BINS])).without_defaults()
            | "HeldCountStats" >> beam.Map(
                _held_count_stats,
                thresholds_side,
                beam.pvalue.AsSingleton(score_histogram, default_value=ScoreHistogram(no_counts.score_histogram)),
            )
        )
        counts_side = beam.pvalue.AsSingleton(count_stats, default_value=no_counts)
        cut_side = self._cut(count_stats, thresholds_side, no_cut)
        candidates = held | "SelectIssueCandidates" >> beam.ParDo(SelectIssueCandidates(), cut_side).with_outputs(
            SelectIssueCandidates.BOUNDARY, main="sure"
        )
        # The second read also counts the confident joint (it needs the thresholds).
        second_read = examples_of("ForCutoffBin")
        joint = full_method.count_confident_joint(second_read, thresholds_side, options)
        agreeing = second_read | "AgreeingRowsOfCutoffBin" >> beam.ParDo(
            SelectAgreeingRowsOfCutoffBin(options, NUM_SCORE_BINS), cut_side
        )
        # Each part's lowest, then the lowest of both: a Flatten of the two would let the
        # local runner fuse this pass with later ones that wait on the result.
        lowest = [
            beam.pvalue.AsSingleton(
                part | f"LowestOf{name}" >> beam.CombineGlobally(LowestScoresFn(id_dtype)).without_defaults(),
                default_value=IssueCandidates.empty(id_dtype),
            )
            for name, part in (("HeldCutoffBinRows", candidates[SelectIssueCandidates.BOUNDARY]),
                               ("AgreeingCutoffBinRows", agreeing))
        ]
        boundary = valid.pipeline | "CutoffBinOnce" >> beam.Create([None]) | "LowestOfCutoffBin" >> beam.Map(
            lambda _, *parts: LowestScoresFn(id_dtype).extract_output(list(parts)), *lowest
        )
        parts = (candidates.sure, candidates[SelectIssueCandidates.BOUNDARY], agreeing)
        return thresholds_side, counts_side, cut_side, candidates.sure, boundary, parts, joint

    def _count_from_rereads(self, valid, examples_of, no_thresholds, no_counts, no_cut, id_dtype):
        """Thresholds, then a pass that counts with them, then one that selects the
        candidates with the cut: each reads the data again and holds nothing."""
        options = self._options
        k = options.num_classes
        threshold_stats = valid | "ConfidentThresholds" >> beam.CombineGlobally(
            ConfidentThresholdsFn(k, options.threshold_sample_fraction)
        ).without_defaults()
        thresholds_side = beam.pvalue.AsSingleton(threshold_stats, default_value=no_thresholds)
        second_read = examples_of("ForCount")
        joint = full_method.count_confident_joint(second_read, thresholds_side, options)
        count_stats = (
            second_read
            | "ScoreLabelQualityForCount" >> beam.ParDo(ScoreLabelQuality(options), thresholds_side)
            | "CountIssues" >> beam.CombineGlobally(IssueCountFn(k, NUM_SCORE_BINS)).without_defaults()
        )
        counts_side = beam.pvalue.AsSingleton(count_stats, default_value=no_counts)
        cut_side = self._cut(count_stats, thresholds_side, no_cut)
        candidates = (
            examples_of("ForRanking")
            | "ScoreLabelQualityForRanking" >> beam.ParDo(
                ScoreLabelQuality(options, with_predictions=False), thresholds_side
            )
            | "SelectIssueCandidates" >> beam.ParDo(SelectIssueCandidates(), cut_side).with_outputs(
                SelectIssueCandidates.BOUNDARY, main="sure"
            )
        )
        boundary = candidates[SelectIssueCandidates.BOUNDARY] | "LowestOfCutoffBin" >> beam.CombineGlobally(
            LowestScoresFn(id_dtype)
        ).without_defaults()
        parts = (candidates.sure, candidates[SelectIssueCandidates.BOUNDARY])
        return thresholds_side, counts_side, cut_side, candidates.sure, boundary, parts, joint

    def expand(self, pinput) -> LabelIssuesResult:
        options = self._options
        id_dtype = tables.numpy_id_dtype(self._id_type)
        no_thresholds, no_counts, no_cut, no_boundary, no_totals = self._empty_results(id_dtype)
        read = self._reader(pinput)
        valid, invalid = self._validated(read("ForThresholds"), "ForThresholds", report_invalid=True)

        def examples_of(stage: str):
            """The validated examples of another pass: the source read again, or the input."""
            return valid if self._source is None else self._validated(read(stage), stage, False)[0]

        if options.uses_full_method:
            threshold_stats = valid | "ConfidentThresholds" >> beam.CombineGlobally(
                ConfidentThresholdsFn(options.num_classes, options.threshold_sample_fraction)
            ).without_defaults()
            thresholds_side = beam.pvalue.AsSingleton(threshold_stats, default_value=no_thresholds)
            full = full_method.full_method_passes(
                pinput.pipeline, examples_of, thresholds_side, options, self._id_type, self._class_names
            )
            counts_side, cut_side, candidates = full.counts_side, full.cut_side, full.keyed_issues
            candidate_parts = (candidates,)
            health = full.health
            boundary_side = no_boundary
        else:
            if options.holds_disagreeing_rows(
                getattr(self._source, "decoding_costs_more", False),
                getattr(self._source, "num_rows", None),
                runners.is_local(pinput.pipeline.runner),
            ):
                shape = self._count_from_held_rows
            else:
                shape = self._count_from_rereads
            passes = shape(valid, examples_of, no_thresholds, no_counts, no_cut, id_dtype)
            thresholds_side, counts_side, cut_side, candidates, boundary, candidate_parts, joint = passes
            boundary_side = beam.pvalue.AsSingleton(boundary, default_value=no_boundary)
            health = full_method.health_of_joint(joint, options)
        health_side = beam.pvalue.AsSingleton(health, default_value=full_method.empty_joint_results(options)[2])
        issues = (
            candidates
            | "GroupByScoreRange" >> beam.GroupByKey()
            | "RankIssues" >> beam.ParDo(RankIssueRange(self._id_type, self._class_names), cut_side, boundary_side)
        )
        totals = issues | "IssueTotals" >> beam.CombineGlobally(IssueTotalsFn()).without_defaults()
        totals_side = beam.pvalue.AsSingleton(totals, default_value=no_totals)

        scores = None
        if options.with_scores:
            if options.uses_full_method:
                scores = full.mark(examples_of("ForScores"))
            else:
                scores = (
                    examples_of("ForScores")
                    | "ScoreLabelQualityForScores" >> beam.ParDo(ScoreLabelQuality(options), thresholds_side)
                    | "MarkLabelIssues" >> beam.ParDo(
                        MarkLabelIssues(self._id_type, self._class_names), cut_side, boundary_side
                    )
                )

        if options.on_invalid == "skip":
            num_invalid = beam.pvalue.AsSingleton(
                invalid | "CountInvalid" >> beam.combiners.Count.Globally().without_defaults(), default_value=0
            )
        else:  # a run that meets an invalid record fails, so a finished one had none
            num_invalid, invalid = 0, None
        if getattr(self._source, "unique_ids", False):
            summary_trigger = pinput.pipeline | "SummaryOnce" >> beam.Create([None])
        else:  # the summary waits for the check (see duplicates.py)
            summary_trigger = candidate_parts | "CheckUniqueIds" >> CheckUniqueCandidateIds()
        summary = summary_trigger | "Summary" >> beam.Map(
            lambda _, *args: _summary(*args),
            totals_side,
            thresholds_side,
            counts_side,
            cut_side,
            num_invalid,
            options,
            self._class_names,
            getattr(self._source, "description", None),
            health_side,
        )
        return LabelIssuesResult(
            issues=issues,
            scores=scores,
            summary=summary,
            invalid_records=invalid,
            id_type=self._id_type,
            class_names=self._class_names,
            options=options,
            health=full_method.health_tables(health, options.num_classes, self._class_names),
        )
