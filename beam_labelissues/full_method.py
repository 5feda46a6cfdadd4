"""Full confident learning as Beam passes: cleanlab's ``filter.find_label_issues`` for every
``filter_by``, and the dataset's health (``cleanlab.dataset``) from the confident joint.

``FindLabelIssues`` calls in here; the kernels are in ``confident_joint.py``. Every pass reads
the source again and only small things cross stages: combine accumulators, the plan, the cuts,
the rows at a cut bin and the issues themselves.

The confident joint (every run, ``CountConfidentJoint``): it needs the thresholds, so it is
counted in the second read of the data, whichever method finds the issues. From it, once:
the plan (calibration, the prune counts, how many rows each cell or class gives up) and the
health (``DatasetHealth``: class and overlap tables, the health score, the noise matrices).

With ``filter_by`` (``full_method_passes``), after the thresholds pass:

- ``confident_learning``, ``predicted_neq_given``: the second read counts the joint and emits
  the selected rows directly (each row is decided on its own, given the thresholds).
- ``low_self_confidence``, ``low_normalized_margin``: the second read also bins every row's
  score; the plan's n (the confident-learning count) cuts the histogram; a third read takes
  the rows below the cut bin and sends those in it to a bottom-n.
- ``prune_by_class``: the second read also bins each row's ``p_given`` per class; the plan's
  per-class counts cut each class's histogram; a third read selects as above, per class.
- ``prune_by_noise_rate``: a third read bins every row's negated margin ``p_given - p_true``
  in each cell of its class the plan takes rows from (a keyed histogram of about 512k
  counters, at most 4M); a fourth read selects per cell. ``both``: the class histogram of the
  second read as well, and a row is taken when both selections take it.

Side inputs are kept small (the local runner holds several copies of each): a histogram is
turned into its cuts where it is summed, and only the cuts travel on.

The rows at a cut bin go to one keyed bottom-n (``LowestPerKeyFn``), which keeps per key only
the rows the key takes; they are resolved into issues once (``SelectionPlan.resolve``). The
issues (rows the method selects, less those where the model agrees with the label, except for
``low_*``) are counted and binned by score, then ranked in score ranges as the batched method's
are: by ``label_quality`` (``method``, ``adjust_pred_probs``), ties by id.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, Callable, Optional, Sequence

import apache_beam as beam
import numpy as np
import pyarrow as pa

from beam_labelissues import confident_joint as cj
from beam_labelissues import kernels, tables
from beam_labelissues.batches import (
    ExampleBatch,
    HistogramEntries,
    IssueCandidates,
    JointCounts,
    SelectionCandidates,
)
from beam_labelissues.combiners import (
    NUM_SCORE_BINS,
    ConfidentJointFn,
    IssueCountStats,
    KeyedHistogram,
    KeyedHistogramFn,
    LowestPerKeyFn,
    SelectedIssues,
    SelectedIssuesFn,
    SumCountsFn,
    ThresholdStats,
)
from beam_labelissues.options import LabelIssuesOptions
from beam_labelissues.score_ranges import GatherByScoreRange

_LOG = logging.getLogger(__name__)
# Noise matrices go into summary.json up to this many classes, into their own file above it.
MAX_CLASSES_FOR_SUMMARY_MATRICES = 100


# --- the plan and the health, once -------------------------------------------------------


def filter_cutoffs(threshold_stats: ThresholdStats, dtype: Any) -> np.ndarray:
    """The confident joint's cutoffs (``cleanlab.filter``'s thresholds less 1e-6) in ``dtype``."""
    thresholds = cj.filter_thresholds(threshold_stats.thresholds, threshold_stats.examples_per_class)
    return cj.exact_cutoffs(thresholds, dtype)


def plan_of(joint: JointCounts, options: LabelIssuesOptions) -> cj.LabelIssuePlan:
    """The plan of ``options.filter_by`` from the summed joint; without a ``filter_by``, the
    calibration only (as for ``confident_learning``)."""
    pruning = options.filter_by in cj.PRUNING_FILTERS
    return cj.plan_label_issues(
        joint.codes,
        joint.counts,
        joint.label_counts,
        joint.num_confident_learning_issues,
        filter_by=options.filter_by or "confident_learning",
        frac_noise=options.frac_noise if pruning else 1.0,
        num_to_remove_per_class=options.num_to_remove_per_class if pruning else None,
        min_examples_per_class=options.min_examples_per_class if pruning else 1,
        tie_break=options.calibration_tie_break,
    )


@dataclasses.dataclass(frozen=True)
class DatasetHealth:
    """``cleanlab.dataset.health_summary`` and the latent noise estimates, from the calibrated
    confident joint. With no example, only the counts (the rest is None or empty)."""

    num_examples: int
    num_classes: int
    num_confident_learning_issues: int
    calibration_rounding_ties: int
    calibrated_joint: cj.SparseSquare
    overall_label_health_score: Optional[float]
    classes: Optional[cj.ClassLabelQuality]
    overlapping: Optional[cj.OverlappingClasses]
    noise: Optional[cj.LatentNoiseEstimates]

    @property
    def noise_matrices_in_summary(self) -> bool:
        return self.num_classes <= MAX_CLASSES_FOR_SUMMARY_MATRICES

    def summary_fields(self) -> dict:
        """The health's keys of summary.json."""
        fields = {
            "overall_label_health_score": self.overall_label_health_score,
            "num_confident_learning_issues": self.num_confident_learning_issues,
            "calibration_rounding_ties": self.calibration_rounding_ties,
            "py": None,
            "noise_matrix": None,
            "inverse_noise_matrix": None,
        }
        if self.noise is not None:
            fields["py"] = self.noise.py.tolist()
            if self.noise_matrices_in_summary:
                fields["noise_matrix"] = self.noise.noise_matrix.to_dense().tolist()
                fields["inverse_noise_matrix"] = self.noise.inverse_noise_matrix.to_dense().tolist()
        return fields

    def confident_joint_table(self, class_names: Optional[Sequence[str]]) -> pa.Table:
        joint = self.calibrated_joint
        return tables.confident_joint_table(joint.rows, joint.cols, joint.values, class_names)

    def class_health_table(self, class_names: Optional[Sequence[str]]) -> pa.Table:
        classes = self.classes
        if classes is None:
            empty = np.zeros(0, dtype=np.int64)
            classes = cj.ClassLabelQuality(empty, empty, empty, *(np.zeros(0),) * 3)
        return tables.class_health_table(classes, class_names)

    def overlapping_classes_table(self, class_names: Optional[Sequence[str]]) -> pa.Table:
        overlaps = self.overlapping
        if overlaps is None:
            empty = np.zeros(0, dtype=np.int64)
            overlaps = cj.OverlappingClasses(empty, empty, empty, np.zeros(0))
        return tables.overlapping_classes_table(overlaps, class_names)

    def noise_matrices_table(self, class_names: Optional[Sequence[str]]) -> pa.Table:
        """The non-zero cells of either noise matrix, by (given, true)."""
        k = self.num_classes
        if self.noise is None:
            empty = np.zeros(0, dtype=np.int64)
            return tables.noise_matrices_table(empty, empty, np.zeros(0), np.zeros(0), class_names)
        noise, inverse = self.noise.noise_matrix.nonzero(), self.noise.inverse_noise_matrix.nonzero()
        # noise: (given, true); inverse: (true, given).
        codes = np.union1d(noise.rows * k + noise.cols, inverse.cols * k + inverse.rows)
        noise_rate = np.zeros(len(codes))
        noise_rate[np.searchsorted(codes, noise.rows * k + noise.cols)] = noise.values
        inverse_rate = np.zeros(len(codes))
        inverse_rate[np.searchsorted(codes, inverse.cols * k + inverse.rows)] = inverse.values
        return tables.noise_matrices_table(codes // k, codes % k, noise_rate, inverse_rate, class_names)


def dataset_health(plan: cj.LabelIssuePlan, joint: JointCounts) -> DatasetHealth:
    n = joint.num_examples
    calibrated = plan.calibrated_joint
    if n == 0:
        return DatasetHealth(0, plan.num_classes, 0, 0, calibrated.matrix.nonzero(), None, None, None, None)
    return DatasetHealth(
        num_examples=n,
        num_classes=plan.num_classes,
        num_confident_learning_issues=joint.num_confident_learning_issues,
        calibration_rounding_ties=plan.rounding_ties,
        calibrated_joint=calibrated.matrix.nonzero(),
        overall_label_health_score=cj.overall_label_health_score(joint.num_confident_learning_issues, n),
        classes=cj.class_label_quality(calibrated.matrix, n),
        overlapping=cj.overlapping_classes(calibrated.matrix, n),
        noise=cj.latent_noise_estimates(calibrated.matrix, joint.label_counts),
    )


def _logged_health(plan: cj.LabelIssuePlan, joint: JointCounts) -> DatasetHealth:
    health = dataset_health(plan, joint)
    if health.overall_label_health_score is not None:
        _LOG.info("overall label health score: %.4f", health.overall_label_health_score)
    return health


@dataclasses.dataclass(frozen=True)
class LabelHealth:
    """The dataset's health as PCollections, each of one ``pyarrow.Table`` (schemas in
    tables.py): ``confident_joint``, ``class_health``, ``overlapping_classes`` and, with more
    than 100 classes, ``noise_matrices`` (else None: summary.json holds the matrices)."""

    confident_joint: beam.PCollection
    class_health: beam.PCollection
    overlapping_classes: beam.PCollection
    noise_matrices: Optional[beam.PCollection]

    def pcollections(self):
        return [p for p in (self.confident_joint, self.class_health, self.overlapping_classes,
                            self.noise_matrices) if p is not None]


class _HealthTables(beam.DoFn):
    """The health's tables, one tagged output each (one step instead of one per table)."""

    def __init__(self, class_names: Optional[Sequence[str]], with_noise_matrices: bool):
        self._class_names = class_names
        self._with_noise_matrices = with_noise_matrices

    def process(self, health: DatasetHealth):
        names = self._class_names
        yield beam.pvalue.TaggedOutput("confident_joint", health.confident_joint_table(names))
        yield beam.pvalue.TaggedOutput("class_health", health.class_health_table(names))
        yield beam.pvalue.TaggedOutput("overlapping_classes", health.overlapping_classes_table(names))
        if self._with_noise_matrices:
            yield beam.pvalue.TaggedOutput("noise_matrices", health.noise_matrices_table(names))


def health_tables(health, num_classes: int, class_names: Optional[Sequence[str]]) -> LabelHealth:
    """The health's tables, one PCollection each, from the PCollection of the one
    ``DatasetHealth`` (empty when no example was valid: then so are the tables)."""
    with_noise_matrices = num_classes > MAX_CLASSES_FOR_SUMMARY_MATRICES
    outputs = health | "HealthTables" >> beam.ParDo(_HealthTables(class_names, with_noise_matrices)).with_outputs(
        "confident_joint", "class_health", "overlapping_classes", "noise_matrices")
    return LabelHealth(
        confident_joint=outputs.confident_joint,
        class_health=outputs.class_health,
        overlapping_classes=outputs.overlapping_classes,
        noise_matrices=outputs.noise_matrices if with_noise_matrices else None,
    )


def empty_joint_results(options: LabelIssuesOptions):
    """The joint, plan and health of an input with no valid example (side-input defaults)."""
    joint = JointCounts.empty(options.num_classes)
    plan = plan_of(joint, options)
    return joint, plan, dataset_health(plan, joint)


# --- the second read: the confident joint ----------------------------------------------


@beam.typehints.with_output_types(JointCounts)
class CountConfidentJoint(beam.DoFn):
    """Each batch's share of the confident joint, with ``cleanlab.filter``'s thresholds."""

    def __init__(self, num_classes: int):
        self._num_classes = num_classes

    def _joint(self, batch: ExampleBatch, threshold_stats: ThresholdStats):
        cutoffs = filter_cutoffs(threshold_stats, batch.pred_probs.dtype)
        joint = cj.confident_joint_of_batch(batch.labels, batch.pred_probs, cutoffs, self._num_classes)
        label_counts = np.bincount(batch.labels, minlength=self._num_classes).astype(np.int64)
        return joint, JointCounts(joint.codes, joint.counts, label_counts, joint.num_confident_learning_issues)

    def process(self, batch: ExampleBatch, threshold_stats: ThresholdStats):
        if len(batch):
            yield self._joint(batch, threshold_stats)[1]


def count_confident_joint(examples, thresholds_side, options: LabelIssuesOptions):
    """The summed joint of a read's examples: a PCollection of one ``JointCounts`` (none when
    no example was valid)."""
    return (
        examples
        | "CountConfidentJoint" >> beam.ParDo(CountConfidentJoint(options.num_classes), thresholds_side)
        | "SumConfidentJoint" >> beam.CombineGlobally(ConfidentJointFn(options.num_classes)).without_defaults()
    )


def health_of_joint(joint, options: LabelIssuesOptions):
    """The health of a run without ``filter_by`` (the calibration only), in one step: a
    PCollection of one ``DatasetHealth``."""
    return joint | "DatasetHealth" >> beam.Map(
        lambda joint_counts: _logged_health(plan_of(joint_counts, options), joint_counts))


def _once(pipeline, name: str, transform):
    """``transform`` (a Map on side inputs) run once, on its own ``Create([None])``: steps
    sharing one Create would be fused into one stage that waits for all their side inputs, one
    of which may come from another of them (the local runner then never runs it)."""
    return pipeline | f"{name}Once" >> beam.Create([None]) | name >> transform


# --- issue rows -------------------------------------------------------------------------


def issue_rows(batch: ExampleBatch, rows: np.ndarray, threshold_stats: ThresholdStats,
               options: LabelIssuesOptions) -> IssueCandidates:
    """The rows ``rows`` of a batch with what the issue table needs: the predicted class, the
    ranking's label quality, and whether the model agrees with the label."""
    labels = batch.labels[rows]
    probs = batch.pred_probs[rows]
    predicted, top_prob, agrees = kernels.predictions(labels, probs)
    scores = kernels.label_quality_scores(labels, probs, threshold_stats.thresholds, method=options.method,
                                          adjust=options.adjust_pred_probs)
    class_dtype = kernels.class_index_dtype(batch.num_classes)
    return IssueCandidates(kernels.narrow_integers(batch.ids[rows]), labels.astype(class_dtype),
                           predicted.astype(class_dtype), scores, agrees, 0,
                           probs[np.arange(len(rows)), labels], top_prob)


def _row_local_selection(filter_by: str, batch: ExampleBatch, joint: cj.JointOfBatch) -> np.ndarray:
    """The rows ``confident_learning`` (counted off the diagonal) or ``predicted_neq_given``
    (argmax is not the label) select, before dropping rows where the model agrees."""
    if filter_by == "confident_learning":
        return np.flatnonzero(joint.off_diagonal)
    return np.flatnonzero(kernels.predicted_labels(batch.pred_probs) != batch.labels)


class ScanForFullMethod(CountConfidentJoint):
    """The second read of a ``filter_by`` run. Main output, per batch, for one combine
    (``joint_pass_combine``): its share of the joint, the histogram of its rows' label
    quality (for the summary), and the entries of the histogram the method cuts before its
    plan (``p_given`` per class for prune_by_class and both, the score for low_*; else None).
    The ``selected`` output holds the rows the row-local methods select."""

    SELECTED = "selected"

    def __init__(self, options: LabelIssuesOptions, selection_bins: int):
        super().__init__(options.num_classes)
        self._options = options
        self._selection_bins = selection_bins

    def process(self, batch: ExampleBatch, threshold_stats: ThresholdStats):
        if not len(batch):
            return
        options, k, bins = self._options, self._num_classes, self._selection_bins
        joint, counts = self._joint(batch, threshold_stats)
        scores = kernels.label_quality_scores(batch.labels, batch.pred_probs, threshold_stats.thresholds,
                                              method=options.method, adjust=options.adjust_pred_probs)
        histogram = np.bincount(kernels.score_bins(scores, NUM_SCORE_BINS), minlength=NUM_SCORE_BINS)
        entries = None
        filter_by = options.filter_by
        if filter_by in cj.ROW_LOCAL_FILTERS:
            rows = _row_local_selection(filter_by, batch, joint)
            if len(rows):
                yield beam.pvalue.TaggedOutput(self.SELECTED, issue_rows(batch, rows, threshold_stats, options))
        elif filter_by in ("prune_by_class", "both"):
            confidence = kernels.self_confidence(batch.labels, batch.pred_probs)
            entries = HistogramEntries(k * bins, batch.labels * bins + cj.selection_bins(confidence, 0.0, 1.0, bins))
        elif filter_by in cj.LOW_SCORE_FILTERS:
            low = kernels.label_quality_scores(batch.labels, batch.pred_probs, None,
                                               method=cj.LOW_SCORE_FILTERS[filter_by])
            entries = HistogramEntries(bins, cj.selection_bins(low, 0.0, 1.0, bins))
        yield counts, (histogram.astype(np.int64),), entries


def joint_pass_combine(num_classes: int) -> beam.CombineFn:
    """One combine for the second read of a ``filter_by`` run: (joint, score histogram, the
    cut's histogram), each part summed by its own CombineFn."""
    return beam.combiners.TupleCombineFn(ConfidentJointFn(num_classes), SumCountsFn([NUM_SCORE_BINS]),
                                         KeyedHistogramFn())


# --- the cut of prune_by_noise_rate (its own read) ---------------------------------------


@dataclasses.dataclass(frozen=True)
class NoiseRateSetup:
    """The plan's noise-rate cells and how finely each cell's values are binned."""

    cells: cj.NoiseRateCells
    num_bins: int

    @property
    def histogram_size(self) -> int:
        return (len(self.cells) + 1) * self.num_bins  # one key more: the dense table's non-cells


def noise_rate_setup(plan: cj.LabelIssuePlan) -> NoiseRateSetup:
    cells = cj.NoiseRateCells.of_plan(plan)
    return NoiseRateSetup(cells, cj.bins_per_key(len(cells) + 1))


@beam.typehints.with_output_types(HistogramEntries)
class BinNoiseRateMargins(beam.DoFn):
    """Each row's negated margin in every cell of its class, binned per cell."""

    def process(self, batch: ExampleBatch, setup: NoiseRateSetup):
        if len(batch) and len(setup.cells):
            codes = cj.noise_rate_histogram_codes(batch.labels, batch.pred_probs, setup.cells, setup.num_bins)
            yield HistogramEntries(setup.histogram_size, codes)


@dataclasses.dataclass(frozen=True)
class PlannedJoint:
    """What the second read of a ``filter_by`` run leads to, computed once: the plan, the joint
    it came from, the histogram of every row's label quality (for the summary), and the cut of
    the selection whose histogram the second read kept (prune_by_class and both: per class;
    low_*: the one key; else None). The histogram itself stays here: only the cut, a few
    numbers per key, travels on as a side input."""

    plan: cj.LabelIssuePlan
    joint: JointCounts
    score_histogram: np.ndarray
    first_cut: Optional[cj.KeyedCut]


def plan_second_read(sums, options: LabelIssuesOptions, bins: int) -> PlannedJoint:
    """From the second read's (joint, (score histogram,), keyed histogram)."""
    joint, (score_histogram,), histogram = sums
    plan = plan_of(joint, options)
    take = None
    if options.filter_by in ("prune_by_class", "both"):
        take = plan.class_take
    elif options.filter_by in cj.LOW_SCORE_FILTERS:
        take = np.array([plan.num_low_score_issues])
    cut = None if take is None else cj.KeyedCut.from_histogram(histogram.codes, histogram.counts, bins, take)
    return PlannedJoint(plan, joint, score_histogram, cut)


def noise_rate_cut(histogram: KeyedHistogram, planned: PlannedJoint, setup: NoiseRateSetup) -> cj.KeyedCut:
    """Each noise-rate cell's cut, from the cut read's histogram and the plan's counts."""
    take = np.append(planned.plan.noise_rate_take, 0)  # the non-cells key takes nothing
    cut = cj.KeyedCut.from_histogram(histogram.codes, histogram.counts, setup.num_bins, take)
    return cj.KeyedCut(setup.num_bins, cut.cut_bin[:-1], cut.take_at_cut[:-1])


def selection_plan(planned: PlannedJoint, options: LabelIssuesOptions, setup: Optional[NoiseRateSetup],
                   noise_rate: Optional[cj.KeyedCut]) -> cj.SelectionPlan:
    """The cuts of every key the selection read needs."""
    filter_by = options.filter_by
    cells = setup.cells if filter_by in ("prune_by_noise_rate", "both") and setup is not None else None
    by_class = filter_by in ("prune_by_class", "both")
    return cj.SelectionPlan(
        filter_by,
        planned.plan.num_classes,
        noise_rate=cells,
        noise_rate_cut=noise_rate if cells is not None else None,
        class_cut=planned.first_cut if by_class else None,
        low_score_cut=planned.first_cut if filter_by in cj.LOW_SCORE_FILTERS else None,
    )


# --- the selection read ---------------------------------------------------------------


@beam.typehints.with_output_types(IssueCandidates)
class SelectByPlan(beam.DoFn):
    """The selection read: the rows taken for sure (main output, as ``IssueCandidates``) and
    the rows at a key's cut bin (``boundary``, as ``SelectionCandidates``)."""

    BOUNDARY = "boundary"

    def __init__(self, options: LabelIssuesOptions):
        self._options = options

    def process(self, batch: ExampleBatch, selection: cj.SelectionPlan, threshold_stats: ThresholdStats):
        if not len(batch):
            return
        sure, entries, flags = selection.select(batch.labels, batch.pred_probs)
        rows = np.flatnonzero(sure)
        if len(rows):
            yield issue_rows(batch, rows, threshold_stats, self._options)
        if len(entries.rows):
            unique_rows, position = np.unique(entries.rows, return_inverse=True)
            fields = issue_rows(batch, unique_rows, threshold_stats, self._options).take(position)
            yield beam.pvalue.TaggedOutput(self.BOUNDARY, SelectionCandidates(
                keys=entries.keys, values=entries.values, ids=fields.ids, take=entries.take,
                flags=flags, given=fields.given, predicted=fields.predicted, scores=fields.scores,
                model_agrees=fields.model_agrees, given_prob=fields.given_prob, predicted_prob=fields.predicted_prob,
            ))


def resolve_boundary(chosen: SelectionCandidates, selection: cj.SelectionPlan) -> IssueCandidates:
    """The selected rows among the entries the cut bins chose, once each."""
    kept = selection.resolve(chosen.keys, chosen.ids, chosen.flags)
    return chosen.take_rows(kept).issues()


# --- ranking ---------------------------------------------------------------------------


def ranking_cut(selected: SelectedIssues, max_issues_per_range: int):
    """Score ranges of at most about ``max_issues_per_range`` issues each, over every bin."""
    from beam_labelissues.transforms import IssueCut  # transforms imports this module

    histogram = selected.issue_histogram
    ranges = kernels.plan_rank_ranges(histogram, len(histogram), max_issues_per_range)
    return IssueCut(
        num_issues=selected.num_selected,
        cutoff_bin=-1,
        num_bins=len(histogram),
        take_from_cutoff_bin=0,
        range_first_bins=tuple(first for first, _ in ranges),
        range_offsets=tuple(offset for _, offset in ranges),
    )


class KeyIssuesByScoreRange(GatherByScoreRange):
    """Drops the rows where the model agrees with the label (unless low_*) and keys the rest by
    the score range that ranks them, gathered per bundle (see ``score_ranges``)."""

    def __init__(self, drops_agreeing_rows: bool):
        self._drops_agreeing_rows = drops_agreeing_rows

    def process(self, candidates: IssueCandidates, cut):
        self.note_bundle(cut.num_ranges, candidates.take(np.zeros(0, dtype=np.int64)))
        if self._drops_agreeing_rows:
            candidates = candidates.take(np.flatnonzero(~candidates.model_agrees))
        if len(candidates):
            yield from self.gather(candidates, cut.range_of(kernels.score_bins(candidates.scores, cut.num_bins)))


# --- every example's score and flag (with_scores) ----------------------------------------


class MarkSelectedIssues(beam.DoFn):
    """Every example's label quality and whether ``filter_by`` flags it, as an Arrow table.

    The selection is decided again per row: for sure below a cut bin, or chosen at it (the
    resolved rows, a side input as small as the issues at the cut bins)."""

    def __init__(self, options: LabelIssuesOptions, id_type: pa.DataType, class_names: Optional[Sequence[str]]):
        self._options = options
        self._id_type = id_type
        self._class_names = class_names

    def process(self, batch: ExampleBatch, threshold_stats: ThresholdStats, selection: Optional[cj.SelectionPlan],
                resolved: IssueCandidates):
        if not len(batch):
            return
        options = self._options
        filter_by = options.filter_by
        scores = kernels.label_quality_scores(batch.labels, batch.pred_probs, threshold_stats.thresholds,
                                              method=options.method, adjust=options.adjust_pred_probs)
        predicted, _, agrees = kernels.predictions(batch.labels, batch.pred_probs)
        if filter_by in cj.ROW_LOCAL_FILTERS:
            if filter_by == "confident_learning":
                cutoffs = filter_cutoffs(threshold_stats, batch.pred_probs.dtype)
                selected = cj.confident_joint_of_batch(batch.labels, batch.pred_probs, cutoffs,
                                                       options.num_classes).off_diagonal
            else:
                selected = predicted != batch.labels
        else:
            selected = selection.select(batch.labels, batch.pred_probs)[0]
            if len(resolved):
                selected = selected | np.isin(batch.ids, resolved.ids)
        if filter_by not in cj.LOW_SCORE_FILTERS:
            selected = selected & ~agrees
        yield tables.label_quality_scores_table(batch.ids, batch.labels, predicted, scores, selected,
                                                self._id_type, self._class_names)


# --- the graph ---------------------------------------------------------------------------


@dataclasses.dataclass
class FullMethodPasses:
    """What ``full_method_passes`` hands back to ``FindLabelIssues``: side inputs for the
    summary and the ranking, the issues keyed by score range, the health (a PCollection of
    one ``DatasetHealth``), and a function that marks every example (``with_scores``)."""

    counts_side: Any
    cut_side: Any
    keyed_issues: beam.PCollection
    health: beam.PCollection
    mark: Callable[[beam.PCollection], beam.PCollection]


# Counters of the histogram the second read keeps for the cut before the plan: it travels to
# the plan as a side input, so it is kept small (the rows of a cut bin are compared exactly).
_SECOND_READ_HISTOGRAM_COUNTERS = 1 << 16


def selection_bins_of(options: LabelIssuesOptions) -> int:
    """Bins per key of the histogram the second read keeps for the cut (before the plan)."""
    return max(1, min(cj.MAX_BINS_PER_KEY, _SECOND_READ_HISTOGRAM_COUNTERS // options.num_classes)) \
        if options.filter_by not in cj.LOW_SCORE_FILTERS else cj.MAX_BINS_PER_KEY


def full_method_passes(pipeline, examples_of, thresholds_side, options: LabelIssuesOptions, id_type: pa.DataType,
                       class_names: Optional[Sequence[str]]) -> FullMethodPasses:
    """The passes of a ``filter_by`` run after the thresholds pass (see the module docstring)."""
    filter_by = options.filter_by
    id_dtype = tables.numpy_id_dtype(id_type)
    no_joint, no_plan, _ = empty_joint_results(options)
    bins = selection_bins_of(options)

    # Second read: the joint, the scores' histogram, and what the method needs before its plan.
    scanned = examples_of("ForJoint") | "ScanForFullMethod" >> beam.ParDo(
        ScanForFullMethod(options, bins), thresholds_side
    ).with_outputs(ScanForFullMethod.SELECTED, main="counts")
    second_read = scanned.counts | "SumSecondRead" >> beam.CombineGlobally(
        joint_pass_combine(options.num_classes)).without_defaults()
    no_second_read = (no_joint, (np.zeros(NUM_SCORE_BINS, dtype=np.int64),), KeyedHistogram.empty())
    planned = second_read | "PlanLabelIssues" >> beam.Map(plan_second_read, options, bins)
    no_planned = plan_second_read(no_second_read, options, bins)
    planned_side = beam.pvalue.AsSingleton(planned, default_value=no_planned)
    health = planned | "DatasetHealth" >> beam.Map(lambda planned: _logged_health(planned.plan, planned.joint))

    selection_side = None
    resolved = None
    if filter_by in cj.ROW_LOCAL_FILTERS:
        selected = scanned[ScanForFullMethod.SELECTED]
    else:
        setup_side = noise_rate_side = None
        if filter_by in ("prune_by_noise_rate", "both"):
            setup = planned | "NoiseRateSetup" >> beam.Map(lambda planned: noise_rate_setup(planned.plan))
            no_setup = noise_rate_setup(no_plan)
            setup_side = beam.pvalue.AsSingleton(setup, default_value=no_setup)
            cut = (
                examples_of("ForNoiseRateCut")
                | "BinNoiseRateMargins" >> beam.ParDo(BinNoiseRateMargins(), setup_side)
                | "SumNoiseRateHistogram" >> beam.CombineGlobally(KeyedHistogramFn()).without_defaults()
                | "NoiseRateCut" >> beam.Map(noise_rate_cut, planned_side, setup_side)
            )
            noise_rate_side = beam.pvalue.AsSingleton(
                cut, default_value=noise_rate_cut(KeyedHistogram.empty(), no_planned, no_setup))
        selection = _once(pipeline, "SelectionPlan", beam.Map(
            lambda _, planned, setup, noise_rate: selection_plan(planned, options, setup, noise_rate),
            planned_side, setup_side, noise_rate_side,
        ))
        no_selection = selection_plan(no_planned, options, noise_rate_setup(no_plan),
                                      noise_rate_cut(KeyedHistogram.empty(), no_planned, noise_rate_setup(no_plan)))
        selection_side = beam.pvalue.AsSingleton(selection, default_value=no_selection)
        picked = examples_of("ForSelection") | "SelectByPlan" >> beam.ParDo(
            SelectByPlan(options), selection_side, thresholds_side
        ).with_outputs(SelectByPlan.BOUNDARY, main="sure")
        chosen = beam.pvalue.AsSingleton(
            picked[SelectByPlan.BOUNDARY]
            | "LowestPerKeyOfCutBins" >> beam.CombineGlobally(LowestPerKeyFn(id_dtype)).without_defaults(),
            default_value=SelectionCandidates.empty(id_dtype),
        )
        resolved = _once(pipeline, "ResolveCutBins", beam.Map(
            lambda _, chosen, selection: resolve_boundary(chosen, selection), chosen, selection_side))
        selected = (picked.sure, resolved) | "SelectedRows" >> beam.Flatten()

    drops = filter_by not in cj.LOW_SCORE_FILTERS
    totals = selected | "CountSelectedIssues" >> beam.CombineGlobally(
        SelectedIssuesFn(drops, NUM_SCORE_BINS)).without_defaults()
    no_selected = SelectedIssues(0, np.zeros(NUM_SCORE_BINS, dtype=np.int64))
    cut = totals | "IssueRanges" >> beam.Map(_logged_ranking_cut, options.max_issues_per_worker)
    cut_side = beam.pvalue.AsSingleton(cut, default_value=ranking_cut(no_selected, options.max_issues_per_worker))
    # Once, whatever was selected: the summary's histogram of every row's score comes from here.
    counts = _once(pipeline, "IssueCountStats", beam.Map(
        lambda _, totals, planned, threshold_stats: IssueCountStats(
            prune_counts=np.zeros(options.num_classes, dtype=np.int64),
            normalization=None,
            class_counts=threshold_stats.examples_per_class,
            score_histogram=planned.score_histogram,
            issue_histogram=totals.issue_histogram,
        ),
        beam.pvalue.AsSingleton(totals, default_value=no_selected), planned_side, thresholds_side,
    ))
    no_counts = IssueCountStats(np.zeros(options.num_classes, dtype=np.int64), None,
                                np.zeros(options.num_classes, dtype=np.int64),
                                np.zeros(NUM_SCORE_BINS, dtype=np.int64), np.zeros(NUM_SCORE_BINS, dtype=np.int64))
    counts_side = beam.pvalue.AsSingleton(counts, default_value=no_counts)
    keyed = selected | "KeyIssuesByScoreRange" >> beam.ParDo(KeyIssuesByScoreRange(drops), cut_side)

    resolved_side = (beam.pvalue.AsSingleton(resolved, default_value=IssueCandidates.empty(id_dtype))
                     if resolved is not None else IssueCandidates.empty(id_dtype))

    def mark(examples):
        return examples | "MarkSelectedIssues" >> beam.ParDo(
            MarkSelectedIssues(options, id_type, class_names), thresholds_side, selection_side, resolved_side)

    return FullMethodPasses(counts_side, cut_side, keyed, health, mark)


def _logged_ranking_cut(totals: SelectedIssues, max_issues_per_range: int):
    cut = ranking_cut(totals, max_issues_per_range)
    _LOG.info("rows selected: %s; ranking the issues in %d score range(s)", f"{cut.num_issues:,}", cut.num_ranges)
    return cut
