"""cleanlab's batched API, in-process: ``find_label_issues_batched`` and ``LabelInspector``.

Both keep cleanlab 2.9's signatures and argument meanings
(``cleanlab.experimental.label_issues_batched``) and are built on this package's
parts, not on a second implementation:

- ``find_label_issues_batched`` runs the ``FindLabelIssues`` pipeline on Beam's
  local runner over a re-readable source of the arrays or files (``n_jobs``
  workers), so it gives the pipeline's answer: exact thresholds, issues ranked by
  (score, id), the same validation and errors;
- ``LabelInspector`` feeds the batches you stream to the pipeline's own
  accumulators (``ConfidentThresholdsFn``, ``IssueCountFn``) and scoring step.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, List, Optional, Tuple

import apache_beam as beam
import numpy as np
from apache_beam.options.pipeline_options import PipelineOptions

from beam_labelissues import kernels
from beam_labelissues.batches import ExampleBatch
from beam_labelissues.combiners import ConfidentThresholdsFn, IssueCountFn, ThresholdStats
from beam_labelissues.io import arrays, outputs
from beam_labelissues.io.npy import read_npy_header
from beam_labelissues.options import LabelIssuesOptions, default
from beam_labelissues.transforms import FindLabelIssues, ScoreLabelQuality
from beam_labelissues.validation import InvalidRecordError, error_inside, validate_batch

DEFAULT_TOLERANCE = default("tolerance")
DEFAULT_ROW_SUM_TOLERANCE = default("row_sum_tolerance")

_LOG = logging.getLogger(__name__)
_PACKAGE_LOGGER = "beam_labelissues"

# The kind of local worker for n_jobs > 1 (see _worker_mode), chosen by measurement on 2 busy
# cores, medians of 3: 10M x 10 float32 .npy files took 2.3 s on one worker, 2.6 s on two
# threads and 5.5 s on two processes (each worker process starts in about 1.5 s and every
# element it shares crosses a gRPC channel); 50M x 10 took 8-10 s on one worker or two
# threads and 8-16 s on two processes; the CLI measured 100M x 10 at 28 s on one worker and
# 17 s on two processes. In-memory arrays always use threads: a process would need a copy.
THREADS, PROCESSES = "multi_threading", "multi_processing"
# From this many bytes of pred_probs, file-backed inputs use worker processes (the CLI's rule).
PROCESSES_FROM_BYTES = 1 << 30


# ---------------------------------------------------------------- options shared by both APIs


def _settings(quality_score_kwargs: Optional[dict], num_issue_kwargs: Optional[dict]) -> Dict[str, Any]:
    """cleanlab's kwargs dicts as FindLabelIssues options; unknown keys are an error, not ignored."""
    quality = dict(quality_score_kwargs or {})
    issues = dict(num_issue_kwargs or {})
    unknown = sorted(set(quality) - {"method", "adjust_pred_probs"})
    if unknown:
        raise ValueError(
            f"quality_score_kwargs supports method and adjust_pred_probs, got {', '.join(map(repr, unknown))}"
        )
    unknown = sorted(set(issues) - {"estimation_method"})
    if unknown:
        raise ValueError(f"num_issue_kwargs supports estimation_method, got {', '.join(map(repr, unknown))}")
    return {
        "method": quality.get("method", "self_confidence"),
        "adjust_pred_probs": bool(quality.get("adjust_pred_probs", False)),
        "estimation_method": issues.get("estimation_method", "off_diagonal"),
    }


def resolve_n_jobs(n_jobs: Optional[int]) -> int:
    """cleanlab's rule: None means the physical cores (psutil), else the logical ones."""
    if n_jobs is None:
        try:
            import psutil

            cores = psutil.cpu_count(logical=False)
        except ImportError:
            cores = None
        return max(1, cores or os.cpu_count() or 1)
    if int(n_jobs) < 1:
        raise ValueError(f"n_jobs must be >= 1 or None, got {n_jobs!r}")
    return int(n_jobs)


@contextlib.contextmanager
def _progress_to_stderr(verbose: bool):
    """With verbose, the package's log lines (progress, estimates) go to stderr for the call."""
    if not verbose:
        yield
        return
    logger = logging.getLogger(_PACKAGE_LOGGER)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s beam_labelissues: %(message)s", "%H:%M:%S"))
    previous = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # once, on stderr, even where Beam configured the root logger
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.level, logger.propagate = previous


# ---------------------------------------------------------------- find_label_issues_batched


def _one_of(value: Any, path: Optional[str], name: str) -> Any:
    if path is not None:
        if value is not None:
            raise ValueError(f"only specify one of: `{name}` or `{name}_file`")
        if not isinstance(path, (str, os.PathLike)):
            raise ValueError(f"{name}_file must be a str: the path of a .npy file or a Zarr store")
        return os.fspath(path)
    if value is None:
        raise ValueError(f"must provide one of: `{name}` or `{name}_file`")
    return value


def _column(value: Any, name: str) -> arrays.ArrayColumn:
    """A path (.npy file or Zarr store, local or on any Beam filesystem) or an array-like."""
    if isinstance(value, str):
        from beam_labelissues.io import zarr_input

        if zarr_input.is_zarr_path(value):
            return zarr_input.ZarrColumn(value)
        return arrays.NpyFileColumn(read_npy_header(value))
    return arrays.column_of(value, name)


def open_source(labels: Any, pred_probs: Any, batch_size: Optional[int]) -> arrays.ReadArrayExamples:
    """The source for find_label_issues_batched's inputs: paths or array-likes, in any mix."""
    return arrays.ReadArrayExamples(_column(labels, "labels"), _column(pred_probs, "pred_probs"), batch_size=batch_size)


def _worker_mode(source: arrays.ReadArrayExamples, n_jobs: int) -> Optional[str]:
    if n_jobs == 1:
        return None
    if source.in_process_only or source.pred_probs_bytes < PROCESSES_FROM_BYTES:
        return THREADS
    return PROCESSES


def _pipeline_options(n_jobs: int, mode: Optional[str]) -> PipelineOptions:
    args = ["--runner=FnApiRunner", f"--direct_num_workers={n_jobs}"]
    if mode is not None:
        args.append(f"--direct_running_mode={mode}")
    return PipelineOptions(args)


def run_and_read_issues(transform: FindLabelIssues, options: PipelineOptions) -> Tuple[np.ndarray, outputs.Summary]:
    """Runs ``transform`` on its source and returns (issue ids in rank order, the summary).

    The only place this module meets the output directory: the pipeline writes its
    usual outputs to a temporary one, read back here and deleted.
    """
    with tempfile.TemporaryDirectory(prefix="beam_labelissues_") as output_dir:
        pipeline = beam.Pipeline(options=options)
        pipeline | "FindLabelIssues" >> transform | "WriteLabelIssues" >> outputs.WriteLabelIssues(output_dir)
        try:
            pipeline.run().wait_until_finish()
        except Exception as error:
            ours = error_inside(error)
            if ours is None:
                raise
            raise ours from error
        summary = outputs.read_summary(output_dir)
        ranked = outputs.read_label_issues(output_dir, summary, columns=["id"])
    return ranked.column("id").to_numpy().astype(np.int64), summary


def find_label_issues_batched(
    labels: Optional[Any] = None,
    pred_probs: Optional[Any] = None,
    *,
    labels_file: Optional[str] = None,
    pred_probs_file: Optional[str] = None,
    batch_size: int = 10000,
    n_jobs: Optional[int] = 1,
    verbose: bool = True,
    quality_score_kwargs: Optional[dict] = None,
    num_issue_kwargs: Optional[dict] = None,
    return_mask: bool = False,
    threshold_sample_fraction: float = 1.0,
    row_sum_tolerance: Optional[float] = DEFAULT_ROW_SUM_TOLERANCE,
) -> np.ndarray:
    """Finds label issues with confident learning, as cleanlab's ``find_label_issues_batched``.

    Runs the ``FindLabelIssues`` Beam pipeline on the local runner; memory does not
    grow with N beyond the issues themselves (and, with ``return_mask``, the mask).

    Parameters (cleanlab's, with the same meanings)
    ----------
    labels, pred_probs: array-likes of N given labels (integers in 0..K-1) and N x K
        predicted probabilities (float16/32/64): numpy arrays, memmaps
        (``np.load(path, mmap_mode="r")``), Zarr arrays, or anything with ``shape``,
        ``dtype`` and row slicing. Only the rows of one batch are read at a time.
    labels_file, pred_probs_file: instead of the arrays, a ``.npy`` file or a Zarr array
        store (v2 or v3), local or on any Beam filesystem (gs://, s3://, ...).
    batch_size: rows per batch. Results never depend on it.
    n_jobs: local workers (None: one per physical core). cleanlab only parallelises part
        of its counting step with it; here every pass runs on ``n_jobs`` workers:
        threads for in-memory arrays (never copied to a worker), processes for file-backed
        inputs of at least ``PROCESSES_FROM_BYTES`` of pred_probs.
    verbose: logs progress and the estimate to stderr.
    quality_score_kwargs: ``method`` (self_confidence, normalized_margin,
        confidence_weighted_entropy) and ``adjust_pred_probs``.
    num_issue_kwargs: ``estimation_method`` (off_diagonal, off_diagonal_calibrated).
    return_mask: return a boolean mask of length N instead of indices.
    threshold_sample_fraction: compute the confident thresholds from a deterministic
        sample of this fraction of the rows, chosen by a hash of the row index
        (``beam_labelissues.sampling``); 1.0, the default, uses every row.
    row_sum_tolerance: a row whose probabilities sum to further than this from 1 is
        invalid (confident learning assumes distributions); None turns the check off.
        The same rule as the pipeline's (``LabelIssuesOptions.row_sum_tolerance``).

    Returns
    -------
    The indices of the examples with label issues RANKED from most to least severe
    (score ascending, ties by index), which is what cleanlab's docstring promises;
    cleanlab 2.9 itself returns them in index order (``np.where`` of its mask). With
    ``return_mask=True``, the boolean mask, equal to cleanlab's.

    Raises ``InvalidRecordError`` for a record breaking the validation rule (a label
    outside [0, K), a NaN or out-of-range probability), naming its index and the reason;
    ``InputFileError`` for a missing or unusable file; ``ValueError`` for bad arguments.
    """
    labels = _one_of(labels, labels_file, "labels")
    pred_probs = _one_of(pred_probs, pred_probs_file, "pred_probs")
    settings = _settings(quality_score_kwargs, num_issue_kwargs)
    if batch_size is None or int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
    workers = resolve_n_jobs(n_jobs)
    source = open_source(labels, pred_probs, int(batch_size))
    mode = _worker_mode(source, workers)
    source.reshuffle = workers > 1
    transform = FindLabelIssues(
        source.num_classes, source=source, threshold_sample_fraction=threshold_sample_fraction,
        row_sum_tolerance=row_sum_tolerance, **settings
    )
    with _progress_to_stderr(verbose):
        _LOG.info(
            "finding label issues in %s with %d %s", source.describe(), workers,
            "worker" if workers == 1 else ("worker threads" if mode == THREADS else "worker processes"),
        )
        started = time.monotonic()
        with arrays.registered(source.labels, source.pred_probs):
            issues, summary = run_and_read_issues(transform, _pipeline_options(workers, mode))
        _LOG.info(
            "%s label issues (%s estimated) among %s examples, in %.1f s",
            f"{len(issues):,}", f"{summary.num_issues_estimated:,}", f"{summary.num_examples:,}",
            time.monotonic() - started,
        )
    if return_mask:
        mask = np.zeros(source.num_examples, dtype=bool)
        mask[issues] = True
        return mask
    return issues


# ---------------------------------------------------------------- LabelInspector

# A batch is split over n_jobs threads only when each part gets at least this many rows.
_MIN_ROWS_PER_THREAD = 1 << 15


class LabelInspector:
    """cleanlab's ``LabelInspector``: stream batches yourself, twice (thresholds, then scores).

    Same methods, arguments and results as cleanlab 2.9's, computed with the
    pipeline's accumulators: the thresholds are exact per-class means (independent
    of batch sizes and order; cleanlab's running mean agrees to about 1e-15), the
    issue count is ``IssueCountFn``'s, the scores ``ScoreLabelQuality``'s. Every
    batch is checked with the pipeline's validation rule; an invalid record raises
    ``InvalidRecordError`` naming its index in the stream (rows are numbered in the
    order they are passed, separately for each of the two passes).

    ``get_label_issues`` returns, as cleanlab's does, the ``get_num_issues()`` lowest
    scores ranked (ties by index), without dropping the examples where the model
    agrees with the label (``find_label_issues_batched`` drops those).

    ``store_results=False`` keeps only the fixed-size accumulators (per-class sums
    and counts, and the count step's score histograms): no per-example memory, and
    like cleanlab, ``get_quality_scores`` and ``get_label_issues`` then raise.

    ``n_jobs`` > 1 splits each large batch over that many threads (each with its own
    accumulators, merged exactly). ``threshold_sample_fraction`` < 1 estimates the
    thresholds from a deterministic sample of rows chosen by a hash of their index.
    """

    def __init__(
        self,
        *,
        num_class: int,
        store_results: bool = True,
        verbose: bool = True,
        quality_score_kwargs: Optional[dict] = None,
        num_issue_kwargs: Optional[dict] = None,
        n_jobs: Optional[int] = 1,
        threshold_sample_fraction: float = 1.0,
        tolerance: float = DEFAULT_TOLERANCE,
        row_sum_tolerance: Optional[float] = DEFAULT_ROW_SUM_TOLERANCE,
    ):
        self.num_class = int(num_class)
        self.store_results = bool(store_results)
        self.verbose = bool(verbose)
        self.quality_score_kwargs = dict(quality_score_kwargs or {})
        self.num_issue_kwargs = dict(num_issue_kwargs or {})
        self.n_jobs = resolve_n_jobs(n_jobs)
        self._options = LabelIssuesOptions(
            num_classes=self.num_class,
            tolerance=float(tolerance),
            row_sum_tolerance=row_sum_tolerance,
            threshold_sample_fraction=float(threshold_sample_fraction),
            **_settings(quality_score_kwargs, num_issue_kwargs),
        )
        self._thresholds_fn = ConfidentThresholdsFn(self.num_class, self._options.threshold_sample_fraction)
        self._thresholds_acc = self._thresholds_fn.create_accumulator()
        self._threshold_stats: Optional[ThresholdStats] = None
        self._count_fn = IssueCountFn(self.num_class)
        self._scorers = {flag: ScoreLabelQuality(self._options, with_predictions=flag) for flag in (False, True)}
        self._count_acc = self._count_fn.create_accumulator()
        self._scores: List[np.ndarray] = []
        self.examples_processed_thresh = 0
        self.examples_processed_quality = 0

    # -- what cleanlab exposes as attributes

    @property
    def confident_thresholds(self) -> np.ndarray:
        return self._stats().thresholds

    @property
    def examples_per_class(self) -> np.ndarray:
        return self._stats().examples_per_class

    @property
    def off_diagonal_calibrated(self) -> bool:
        return self._options.estimation_method == "off_diagonal_calibrated"

    # -- the two passes

    def update_confident_thresholds(self, labels: Any, pred_probs: Any) -> None:
        """Adds a batch to the per-class sums and counts behind the confident thresholds."""
        batch = self._checked(labels, pred_probs, self.examples_processed_thresh)
        parts = self._split(batch)
        if len(parts) == 1:
            self._thresholds_acc = self._thresholds_fn.add_input(self._thresholds_acc, batch)
        else:
            fn = self._thresholds_fn
            with ThreadPoolExecutor(len(parts)) as pool:
                accumulators = list(pool.map(lambda part: fn.add_input(fn.create_accumulator(), part), parts))
            self._thresholds_acc = fn.merge_accumulators([self._thresholds_acc] + accumulators)
        self._threshold_stats = None
        self.examples_processed_thresh += len(batch)

    def score_label_quality(self, labels: Any, pred_probs: Any, *, update_num_issues: bool = True) -> np.ndarray:
        """Returns the batch's label quality scores (low: likely mislabeled) and, unless
        ``update_num_issues=False``, adds the batch to the issue count."""
        if self.examples_processed_thresh < 1:
            raise ValueError(
                "Have not computed any confident_thresholds yet. Call `update_confident_thresholds()` first."
            )
        batch = self._checked(labels, pred_probs, self.examples_processed_quality)
        stats = self._stats()
        parts = self._split(batch)
        if len(parts) == 1:
            scores, accumulator = self._score_part(batch, stats, update_num_issues, self._count_acc)
            if update_num_issues:
                self._count_acc = accumulator
        else:
            with ThreadPoolExecutor(len(parts)) as pool:
                results = list(pool.map(lambda part: self._score_part(part, stats, update_num_issues), parts))
            if update_num_issues:
                self._count_acc = self._count_fn.merge_accumulators([self._count_acc] + [acc for _, acc in results])
            scores = np.concatenate([part_scores for part_scores, _ in results])
        self.examples_processed_quality += len(batch)
        if self.store_results:
            self._scores.append(scores)
        return scores

    # -- results

    def get_confident_thresholds(self, silent: bool = False) -> np.ndarray:
        """The per-class confident thresholds from the batches seen so far, shape ``(K,)``."""
        if self.examples_processed_thresh < 1:
            raise ValueError(
                "Have not computed any confident_thresholds yet. Call `update_confident_thresholds()` first."
            )
        stats = self._stats()
        if self.verbose and not silent:
            sampled = int(stats.sampled_examples_per_class.sum())
            print(f"Total number of examples used to estimate confident thresholds: {sampled}")
        return stats.thresholds

    def get_num_issues(self, silent: bool = False) -> int:
        """The estimated number of label issues among the examples scored so far."""
        if self.examples_processed_quality < 1:
            raise ValueError("Have not evaluated any labels yet. Call `score_label_quality()` first.")
        if self.verbose and not silent:
            print(f"Total number of examples whose labels have been evaluated: {self.examples_processed_quality}")
        stats = self._count_fn.extract_output(self._count_acc)
        return stats.num_issues(self._options.estimation_method)

    def get_quality_scores(self) -> np.ndarray:
        """Every score so far, in the order the examples were passed (needs store_results)."""
        if not self.store_results:
            raise ValueError(
                "Must initialize the LabelInspector with `store_results` == True. Otherwise assemble the "
                "label quality scores yourself from those score_label_quality() returns for each batch."
            )
        return np.concatenate(self._scores) if self._scores else np.zeros(0, dtype=np.float64)

    def get_label_issues(self) -> np.ndarray:
        """Indices of the ``get_num_issues()`` lowest scores, most severe first (ties by index)."""
        if not self.store_results:
            raise ValueError(
                "Must initialize the LabelInspector with `store_results` == True. Otherwise identify the "
                "label issues yourself: the get_num_issues() lowest scores over all batches."
            )
        if self.examples_processed_quality < 1:
            raise ValueError("Have not evaluated any labels yet. Call `score_label_quality()` first.")
        if self.verbose:
            print(f"Total number of examples whose labels have been evaluated: {self.examples_processed_quality}")
        scores = self.get_quality_scores()
        count = min(self.get_num_issues(silent=True), len(scores))
        return kernels.lowest_by_score_then_id(scores, np.arange(len(scores)), count).astype(np.int64)

    # -- internals

    def _stats(self) -> ThresholdStats:
        if self._threshold_stats is None:
            self._threshold_stats = self._thresholds_fn.extract_output(self._thresholds_acc)
        return self._threshold_stats

    def _checked(self, labels: Any, pred_probs: Any, first_id: int) -> ExampleBatch:
        """The batch as an ``ExampleBatch`` after cleanlab's shape checks and the pipeline's
        validation rule; raises for the first invalid record."""
        labels = np.asarray(labels)
        pred_probs = np.asarray(pred_probs)
        if pred_probs.ndim != 2:
            raise ValueError(f"pred_probs must be a 2-D array (examples x classes), got shape {pred_probs.shape}")
        if labels.ndim != 1 or len(labels) != len(pred_probs):
            raise ValueError(
                f"labels and pred_probs must have same length: got labels of shape {labels.shape} "
                f"and pred_probs of shape {pred_probs.shape}"
            )
        if pred_probs.shape[1] != self.num_class:
            raise ValueError(f"num_class must equal pred_probs.shape[1]: {self.num_class} != {pred_probs.shape[1]}")
        if len(labels) and labels.dtype.kind not in "iu":
            raise ValueError(f"labels must be integers (class indices 0..K-1), got dtype {labels.dtype}")
        if pred_probs.dtype.kind != "f" or pred_probs.dtype.itemsize not in (2, 4, 8):
            raise ValueError(f"pred_probs must be float16, float32 or float64, got {pred_probs.dtype}")
        if not pred_probs.dtype.isnative:
            pred_probs = pred_probs.astype(pred_probs.dtype.newbyteorder("="))
        if not labels.dtype.isnative:
            labels = labels.astype(labels.dtype.newbyteorder("="))
        ids = np.arange(first_id, first_id + len(labels), dtype=np.int64)
        valid, invalid = validate_batch(
            ExampleBatch(ids, labels, pred_probs), self.num_class, self._options.tolerance,
            self._options.row_sum_tolerance,
        )
        if invalid:
            first = invalid[0]
            raise InvalidRecordError(
                f"invalid record id={first['id']!r}: {first['reason']} "
                f"({len(invalid)} invalid record(s) in this batch)"
            )
        return valid

    def _split(self, batch: ExampleBatch) -> List[ExampleBatch]:
        parts = min(self.n_jobs, len(batch) // _MIN_ROWS_PER_THREAD)
        if parts <= 1:
            return [batch]
        bounds = np.linspace(0, len(batch), parts + 1).astype(np.int64)
        return [
            ExampleBatch(batch.ids[a:b], batch.labels[a:b], batch.pred_probs[a:b])
            for a, b in zip(bounds[:-1], bounds[1:])
        ]

    def _score_part(self, part: ExampleBatch, stats: ThresholdStats, update_num_issues: bool, accumulator=None):
        """Scores one part as the pipeline's scoring step does; counts it into ``accumulator``
        (a fresh one when None) unless ``update_num_issues`` is False."""
        scored = next(iter(self._scorer(update_num_issues).process(part, stats)))
        if not update_num_issues:
            return scored.scores, None
        if accumulator is None:
            accumulator = self._count_fn.create_accumulator()
        return scored.scores, self._count_fn.add_input(accumulator, scored)

    def _scorer(self, with_predictions: bool) -> ScoreLabelQuality:
        return self._scorers[with_predictions]
