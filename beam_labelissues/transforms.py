"""Beam transforms that compose the kernels into confident learning over a PCollection.

``FindLabelIssues`` is the public entry point; the DoFns here each do one step:
validate, score with the thresholds as a side input, select issue candidates,
mark every example. The passes that need the thresholds or the issue count read
the source again rather than hold it (see ARCHITECTURE.md).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any, Dict, NamedTuple, Optional, Sequence

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam.metrics import Metrics

from beam_labelissues import kernels, tables
from beam_labelissues.batches import ExampleBatch, IssueCandidates, ScoredBatch, validate_batch
from beam_labelissues.combiners import (
    NUM_SCORE_BINS,
    ConfidentThresholdsFn,
    IssueCountFn,
    IssueCountStats,
    LowestScoresFn,
    ThresholdStats,
)

NAMESPACE = "beam_labelissues"
ON_INVALID_CHOICES = ("fail", "skip")
DEFAULT_TOLERANCE = 1e-4
_LOG = logging.getLogger(__name__)


class InvalidRecordError(ValueError):
    """An input record breaks the validation rule and ``on_invalid`` is ``fail``."""


@dataclasses.dataclass(frozen=True)
class LabelIssuesOptions:
    """The confident-learning settings, named as in cleanlab."""

    num_classes: int
    method: str = "self_confidence"
    adjust_pred_probs: bool = False
    estimation_method: str = "off_diagonal"
    tolerance: float = DEFAULT_TOLERANCE
    on_invalid: str = "fail"

    def __post_init__(self):
        if not isinstance(self.num_classes, (int, np.integer)) or self.num_classes < 2:
            raise ValueError(f"num_classes must be an integer >= 2, got {self.num_classes!r}")
        if self.method not in kernels.METHODS:
            raise ValueError(
                f"method must be one of {', '.join(kernels.METHODS)}, got {self.method!r}"
            )
        if self.estimation_method not in kernels.ESTIMATION_METHODS:
            raise ValueError(
                "estimation_method must be one of "
                f"{', '.join(kernels.ESTIMATION_METHODS)}, got {self.estimation_method!r}"
            )
        if self.adjust_pred_probs and self.method == "confidence_weighted_entropy":
            raise ValueError(
                "adjust_pred_probs is not supported with method confidence_weighted_entropy "
                "(cleanlab does not support it either)"
            )
        if not (self.tolerance >= 0):
            raise ValueError(f"tolerance must be >= 0, got {self.tolerance!r}")
        if self.on_invalid not in ON_INVALID_CHOICES:
            raise ValueError(
                f"on_invalid must be one of {', '.join(ON_INVALID_CHOICES)}, got {self.on_invalid!r}"
            )


@dataclasses.dataclass(frozen=True)
class IssueCut:
    """What the ranking pass needs from the count pass."""

    num_issues: int
    cutoff_bin: int
    num_bins: int


class _Progress:
    """Counts rows in a Beam counter and logs them with the rate every few seconds."""

    def __init__(self, stage: str, interval_s: float = 10.0):
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


class ValidateExamples(beam.DoFn):
    """Applies the validation rule; fails on the first invalid record or sets it aside.

    With ``on_invalid='skip'`` the invalid records go to the ``invalid`` output,
    but only from the pass that reports them, so each is written and counted once.
    """

    INVALID = "invalid"

    def __init__(self, options: LabelIssuesOptions, stage: str, report_invalid: bool):
        self._options = options
        self._stage = stage
        self._report_invalid = report_invalid

    def setup(self):
        self._progress = _Progress(self._stage)
        self._invalid_counter = Metrics.counter(NAMESPACE, "invalid_records")

    def process(self, batch: ExampleBatch):
        valid, invalid = validate_batch(batch, self._options.num_classes, self._options.tolerance)
        self._progress.update(len(batch) + len(batch.malformed))
        if invalid:
            if self._options.on_invalid == "fail":
                first = invalid[0]
                raise InvalidRecordError(
                    f"invalid record id={first['id']!r}: {first['reason']}"
                    f" ({len(invalid)} invalid record(s) in this batch; "
                    "rerun with --on_invalid skip to leave them out and list them)"
                )
            if self._report_invalid:
                self._invalid_counter.inc(len(invalid))
                for record in invalid:
                    yield beam.pvalue.TaggedOutput(self.INVALID, record)
        if len(valid):
            yield valid


class ScoreLabelQuality(beam.DoFn):
    """Scores each example's label with the confident thresholds as a side input."""

    def __init__(self, options: LabelIssuesOptions):
        self._options = options

    def process(self, batch: ExampleBatch, threshold_stats: ThresholdStats):
        thresholds = threshold_stats.thresholds
        predicted = kernels.predicted_labels(batch.pred_probs)
        scores = kernels.label_quality_scores(
            batch.labels,
            batch.pred_probs,
            thresholds,
            method=self._options.method,
            adjust=self._options.adjust_pred_probs,
        )
        confident = kernels.confident_predictions(batch.pred_probs, predicted, thresholds)
        yield ScoredBatch(batch, predicted, scores, confident)


class SelectIssueCandidates(beam.DoFn):
    """Keeps only rows in score bins at or below the cut: the only ones that can rank."""

    def process(self, scored: ScoredBatch, cut: IssueCut):
        if cut.cutoff_bin < 0:
            return
        rows = np.flatnonzero(kernels.score_bins(scored.scores, cut.num_bins) <= cut.cutoff_bin)
        if len(rows) == 0:
            return
        examples = scored.examples
        labels = examples.labels[rows]
        yield IssueCandidates(
            ids=examples.ids[rows],
            given=labels,
            predicted=scored.predicted[rows],
            scores=scored.scores[rows],
            model_agrees=kernels.model_agrees_with_label(labels, examples.pred_probs[rows]),
            num_issues=cut.num_issues,
        )


class MarkLabelIssues(beam.DoFn):
    """Writes every example's score and whether it is an issue, as an Arrow table."""

    def __init__(self, id_type: pa.DataType, class_names: Optional[Sequence[str]]):
        self._id_type = id_type
        self._class_names = class_names

    def process(self, scored: ScoredBatch, last_selected: Optional[tuple]):
        examples = scored.examples
        is_issue = np.zeros(len(examples), dtype=bool)
        if last_selected is not None:
            score, last_id = last_selected
            selected = (scored.scores < score) | ((scored.scores == score) & (examples.ids <= last_id))
            rows = np.flatnonzero(selected)
            if len(rows):
                agrees = kernels.model_agrees_with_label(examples.labels[rows], examples.pred_probs[rows])
                is_issue[rows[~agrees]] = True
        yield tables.label_quality_scores_table(
            examples.ids,
            examples.labels,
            scored.predicted,
            scored.scores,
            is_issue,
            self._id_type,
            self._class_names,
        )


def _issue_cut(stats: IssueCountStats, threshold_stats: ThresholdStats, estimation_method: str) -> IssueCut:
    num_issues = min(stats.num_issues(estimation_method), threshold_stats.num_examples)
    _LOG.info("estimated number of label issues: %s", f"{num_issues:,}")
    return IssueCut(
        num_issues=num_issues,
        cutoff_bin=kernels.cutoff_bin(stats.score_histogram, num_issues),
        num_bins=len(stats.score_histogram),
    )


def _last_selected(selected: IssueCandidates) -> Optional[tuple]:
    """The (score, id) of the last of the n lowest rows, the boundary for marking issues."""
    if len(selected) == 0:
        return None
    return float(selected.scores[-1]), selected.ids[-1]


def _drop_agreeing(selected: IssueCandidates) -> IssueCandidates:
    return selected.take(np.flatnonzero(~selected.model_agrees))


def _summary(
    issues: pa.Table,
    threshold_stats: ThresholdStats,
    count_stats: IssueCountStats,
    cut: IssueCut,
    num_invalid: int,
    options: LabelIssuesOptions,
    class_names: Optional[Sequence[str]],
) -> Dict[str, Any]:
    scores = issues.column("label_quality").to_numpy()
    histogram = count_stats.summary_histogram()
    return {
        "num_examples": threshold_stats.num_examples,
        "num_classes": options.num_classes,
        "num_label_issues": issues.num_rows,
        "num_issues_estimated": cut.num_issues,
        "confident_thresholds": threshold_stats.thresholds.tolist(),
        "examples_per_class": threshold_stats.examples_per_class.tolist(),
        "method": options.method,
        "adjust_pred_probs": options.adjust_pred_probs,
        "estimation_method": options.estimation_method,
        "tolerance": options.tolerance,
        "on_invalid": options.on_invalid,
        "num_invalid_records": int(num_invalid),
        "issue_score_range": [float(scores.min()), float(scores.max())] if len(scores) else None,
        "score_histogram": {
            "bin_edges": np.linspace(0.0, 1.0, len(histogram) + 1).tolist(),
            "counts": histogram.tolist(),
        },
        "class_names": list(class_names) if class_names is not None else None,
    }


class LabelIssuesResult(NamedTuple):
    """The PCollections ``FindLabelIssues`` produces.

    - ``issues``: one ``pyarrow.Table`` with the ranked issues (schema ``label_issues_schema``).
    - ``scores``: ``pyarrow.Table`` batches of every example's score, or None unless
      ``with_scores``.
    - ``summary``: one dict, the content of ``summary.json``.
    - ``invalid_records``: dicts (id, reason, label, pred_probs) when ``on_invalid='skip'``.
    """

    issues: beam.PCollection
    scores: Optional[beam.PCollection]
    summary: beam.PCollection
    invalid_records: beam.PCollection


class FindLabelIssues(beam.PTransform):
    """Finds label issues with confident learning, as cleanlab's ``find_label_issues_batched``.

    Apply it to a PCollection of ``ExampleBatch``, or to the pipeline itself with
    ``source=`` a transform that reads ``ExampleBatch`` elements: then each pass
    reads the source again, so nothing of the dataset's size is held in memory.

    Example::

        result = examples | FindLabelIssues(num_classes=10)
        result.issues | beam.Map(print)
    """

    def __init__(
        self,
        num_classes: int,
        *,
        method: str = "self_confidence",
        adjust_pred_probs: bool = False,
        estimation_method: str = "off_diagonal",
        tolerance: float = DEFAULT_TOLERANCE,
        on_invalid: str = "fail",
        with_scores: bool = False,
        source: Optional[beam.PTransform] = None,
        id_type: pa.DataType = pa.int64(),
        class_names: Optional[Sequence[str]] = None,
        label: Optional[str] = None,
    ):
        super().__init__(label)
        self._options = LabelIssuesOptions(
            num_classes=int(num_classes),
            method=method,
            adjust_pred_probs=bool(adjust_pred_probs),
            estimation_method=estimation_method,
            tolerance=float(tolerance),
            on_invalid=on_invalid,
        )
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"got {len(class_names)} class names for {num_classes} classes")
        self._with_scores = with_scores
        self._source = source
        self._id_type = id_type
        self._class_names = list(class_names) if class_names is not None else None

    @property
    def options(self) -> LabelIssuesOptions:
        return self._options

    def _examples(self, pinput, stage: str, report_invalid: bool):
        """Valid examples for one pass, read afresh when there is a source."""
        if self._source is not None:
            if not isinstance(pinput, beam.pvalue.PBegin):
                raise TypeError("with source=, apply FindLabelIssues to the pipeline, not a PCollection")
            raw = pinput | f"Read{stage}" >> self._source
        else:
            if not isinstance(pinput, beam.PCollection):
                raise TypeError("apply FindLabelIssues to a PCollection of ExampleBatch, or give source=")
            raw = pinput
        outputs = raw | f"Validate{stage}" >> beam.ParDo(
            ValidateExamples(self._options, stage, report_invalid)
        ).with_outputs(ValidateExamples.INVALID, main="valid")
        return outputs.valid, outputs[ValidateExamples.INVALID]

    def expand(self, pinput) -> LabelIssuesResult:
        options = self._options
        rereads = self._source is not None
        id_dtype = np.int64 if pa.types.is_integer(self._id_type) else object

        valid, invalid = self._examples(pinput, "ForThresholds", report_invalid=True)
        threshold_stats = valid | "ConfidentThresholds" >> beam.CombineGlobally(
            ConfidentThresholdsFn(options.num_classes)
        )
        thresholds_side = beam.pvalue.AsSingleton(threshold_stats)

        def scored(stage: str):
            examples = self._examples(pinput, stage, report_invalid=False)[0] if rereads else valid
            return examples | f"ScoreLabelQuality{stage}" >> beam.ParDo(
                ScoreLabelQuality(options), thresholds_side
            )

        count_stats = scored("ForCount") | "CountIssues" >> beam.CombineGlobally(
            IssueCountFn(options.num_classes, NUM_SCORE_BINS)
        )
        cut = count_stats | "IssueCut" >> beam.Map(_issue_cut, thresholds_side, options.estimation_method)
        cut_side = beam.pvalue.AsSingleton(cut)

        selected = (
            scored("ForRanking")
            | "SelectIssueCandidates" >> beam.ParDo(SelectIssueCandidates(), cut_side)
            | "LowestScores" >> beam.CombineGlobally(LowestScoresFn(id_dtype))
        )
        issues = (
            selected
            | "DropModelAgrees" >> beam.Map(_drop_agreeing)
            | "RankIssues" >> beam.Map(tables.label_issues_table, self._id_type, self._class_names)
        )

        scores = None
        if self._with_scores:
            scores = scored("ForScores") | "MarkLabelIssues" >> beam.ParDo(
                MarkLabelIssues(self._id_type, self._class_names),
                beam.pvalue.AsSingleton(selected | "LastSelected" >> beam.Map(_last_selected)),
            )

        num_invalid = invalid | "CountInvalid" >> beam.combiners.Count.Globally()
        summary = issues | "Summary" >> beam.Map(
            _summary,
            thresholds_side,
            beam.pvalue.AsSingleton(count_stats),
            cut_side,
            beam.pvalue.AsSingleton(num_invalid),
            options,
            self._class_names,
        )
        return LabelIssuesResult(issues=issues, scores=scores, summary=summary, invalid_records=invalid)
