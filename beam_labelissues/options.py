"""The settings of one confident-learning run, named as in cleanlab, with their defaults.

``FindLabelIssues`` takes a ``LabelIssuesOptions``; the command line reads every
default from here, so each is declared once.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Optional, Sequence, Tuple

import numpy as np

from beam_labelissues import confident_joint, example_uris, kernels, sampling

ON_INVALID_CHOICES = ("fail", "skip")
# The most classes a run accepts. Per-class arrays and lists are allocated before any
# data is read (and for every combine accumulator), and summary.json lists every
# class, so K costs time and memory even when the input has zero rows. Measured on
# a zero-row input: 10^5 classes 5 s and 330 MB in all; 10^6 classes 42 s and 1 GB.
MAX_NUM_CLASSES = 100_000

# Holding the disagreeing rows on a local runner: what one held row costs there (the
# row's seven arrays and the runner's copies of the PCollection; measured on 10M x 10
# Parquet, 2.1M rows held took 244 MB more than re-reading) and the most the rows may
# take when every row disagrees. Above it the run reads the data once more instead,
# so memory stays flat in N.
HELD_ROW_BYTES = 120
LOCAL_HOLD_BUDGET_BYTES = 256 << 20


@dataclasses.dataclass(frozen=True)
class LabelIssuesOptions:
    """What to compute, and how to treat invalid records.

    Attributes:
      num_classes: K, the number of classes; labels are in ``[0, K)``.
      method: the label quality score: ``self_confidence`` (the given label's
        probability), ``normalized_margin`` or ``confidence_weighted_entropy``.
      adjust_pred_probs: subtract the confident thresholds and renormalise each
        row before scoring (not with ``confidence_weighted_entropy``).
      estimation_method: how the number of issues is estimated:
        ``off_diagonal`` or ``off_diagonal_calibrated``.
      tolerance: probabilities within this distance of [0, 1] are valid and used
        as given; further out, the record is invalid. A finite number >= 0.
      row_sum_tolerance: a row whose probabilities sum to further than this from 1
        is invalid (confident learning assumes each row is a distribution). None
        or ``inf`` turns the check off. The default passes softmax outputs stored
        as float16 (their sums are within about 1e-3 of 1).
      on_invalid: ``fail`` stops the run at the first invalid record; ``skip``
        leaves invalid records out of every pass and lists them.
      threshold_sample_fraction: below 1, the confident thresholds are the means
        over the rows whose id falls in a deterministic hash sample of this
        fraction (``beam_labelissues.sampling``: the same rows on every engine
        and batch size), an approximation cleanlab's documentation suggests for
        speed; every row is still scored and counted (the confident joint, and so
        the health and any ``filter_by``, then use those thresholds too). 1 (the
        default) is exact.
      with_scores: also produce every example's score and issue flag.
      max_issues_per_worker: the most issues one worker ranks at once; more are
        ranked in score ranges on separate workers. Results never depend on it.
      hold_disagreeing_rows: keep the rows whose predicted class is not the given
        label (about 24 bytes each) between passes, so the count and the ranking
        need one read of the data less; possible without ``adjust_pred_probs``
        and with ``off_diagonal``. None: when the source says decoding it again
        costs more than holding those rows (Parquet, Zarr) and, on a local runner
        (which holds them in memory), the source has at most
        ``LOCAL_HOLD_BUDGET_BYTES / HELD_ROW_BYTES`` rows (about 2.2M). Results
        never depend on it.
      example_uri_template: where each example lives, as a string with ``{id}``
        where the id goes (``gs://bucket/images/{id}.jpg``); ``WriteLabelIssues``
        then adds a ``uri`` column to the label_issues and label_quality_scores
        files, and the report links each issue to it. Only ``{id}`` is allowed.
      filter_by: None (the default) finds the issues as ``find_label_issues_batched``
        does (the options above). Any of ``cleanlab.filter.find_label_issues``'s
        ``filter_by`` values (``prune_by_noise_rate``, ``prune_by_class``, ``both``,
        ``confident_learning``, ``predicted_neq_given``, ``low_normalized_margin``,
        ``low_self_confidence``) finds them with the full method instead, from the
        confident joint; they are still ranked by ``method`` / ``adjust_pred_probs``.
      frac_noise: with a pruning ``filter_by``, the share of each cell's estimated
        label errors to return (cleanlab's ``frac_noise``, in [0, 1]).
      num_to_remove_per_class: with a pruning ``filter_by``, how many rows to flag
        in each given class, K non-negative integers (cleanlab's argument).
      min_examples_per_class: with a pruning ``filter_by``, a class keeps at least
        this many rows; a class with this many rows or fewer gives up none.
      calibration_tie_break: how the calibrated confident joint breaks ties when it
        rounds a row to integers keeping its total (cells holding equal counts tie
        often): ``numpy`` sorts as cleanlab does (numpy's ``argsort`` on the same dense
        row), so the joint equals cleanlab's on the machine that computes it, but that
        order can differ between CPUs; ``class_index`` moves the lower class first,
        the same answer everywhere. Every run computes the joint (for the dataset's
        health); with a pruning ``filter_by`` it also decides how many rows each cell
        gives up.
    """

    num_classes: int
    method: str = "self_confidence"
    adjust_pred_probs: bool = False
    estimation_method: str = "off_diagonal"
    tolerance: float = 1e-4
    on_invalid: str = "fail"
    threshold_sample_fraction: float = 1.0
    row_sum_tolerance: Optional[float] = 1e-2
    with_scores: bool = False
    max_issues_per_worker: int = 1 << 16
    hold_disagreeing_rows: Optional[bool] = None
    example_uri_template: Optional[str] = None
    filter_by: Optional[str] = None
    frac_noise: float = 1.0
    num_to_remove_per_class: Optional[Tuple[int, ...]] = None
    min_examples_per_class: int = 1
    calibration_tie_break: str = "numpy"

    def holds_disagreeing_rows(
        self, decoding_costs_more: bool = False, num_rows: Optional[int] = None, local_runner: bool = False
    ) -> bool:
        """Whether the run keeps the disagreeing rows between passes (see the class docstring).

        By default a local runner holds them only while every row fitting would stay
        within ``LOCAL_HOLD_BUDGET_BYTES`` (the rows are in its memory; on Dataflow
        and Flink they are in the runner's shuffle)."""
        allowed = not self.adjust_pred_probs and self.estimation_method == "off_diagonal"
        if self.hold_disagreeing_rows is not None:
            return allowed and self.hold_disagreeing_rows
        if local_runner and (num_rows is None or num_rows * HELD_ROW_BYTES > LOCAL_HOLD_BUDGET_BYTES):
            return False
        return allowed and bool(decoding_costs_more)

    def __post_init__(self):
        if isinstance(self.num_classes, bool) or not isinstance(self.num_classes, (int, np.integer)) \
                or self.num_classes < 2:
            raise ValueError(f"num_classes must be an integer >= 2, got {self.num_classes!r}")
        if self.num_classes > MAX_NUM_CLASSES:
            raise ValueError(f"num_classes must be at most {MAX_NUM_CLASSES:,}, got {self.num_classes:,}")
        object.__setattr__(self, "num_classes", int(self.num_classes))
        if self.method not in kernels.METHODS:
            raise ValueError(f"method must be one of {', '.join(kernels.METHODS)}, got {self.method!r}")
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
        if not (0 <= self.tolerance < math.inf):
            raise ValueError(f"tolerance must be a finite number >= 0, got {self.tolerance!r}")
        if self.row_sum_tolerance is not None and not (self.row_sum_tolerance >= 0):
            raise ValueError(f"row_sum_tolerance must be >= 0 (inf or None: no check), got {self.row_sum_tolerance!r}")
        if self.row_sum_tolerance is not None and math.isinf(self.row_sum_tolerance):
            object.__setattr__(self, "row_sum_tolerance", None)  # one spelling of "off"; JSON has no inf
        if self.on_invalid not in ON_INVALID_CHOICES:
            raise ValueError(
                f"on_invalid must be one of {', '.join(ON_INVALID_CHOICES)}, got {self.on_invalid!r}"
            )
        sampling.check_fraction(self.threshold_sample_fraction)
        if isinstance(self.max_issues_per_worker, bool) or int(self.max_issues_per_worker) < 1:
            raise ValueError(f"max_issues_per_worker must be >= 1, got {self.max_issues_per_worker!r}")
        example_uris.check_uri_template(self.example_uri_template)
        self._check_full_method()

    @property
    def uses_full_method(self) -> bool:
        """Whether the issues come from ``cleanlab.filter.find_label_issues`` (a ``filter_by``)."""
        return self.filter_by is not None

    def _check_full_method(self) -> None:
        """cleanlab's rules for ``filter.find_label_issues``'s arguments, and ours for
        combining them with the batched method's."""
        if self.calibration_tie_break not in confident_joint.TIE_BREAKS:
            raise ValueError(
                f"calibration_tie_break must be one of {', '.join(confident_joint.TIE_BREAKS)}, "
                f"got {self.calibration_tie_break!r}"
            )
        if self.filter_by is not None and self.filter_by not in confident_joint.FILTER_BY:
            raise ValueError(
                f"filter_by must be one of {', '.join(confident_joint.FILTER_BY)}, got {self.filter_by!r}"
            )
        if isinstance(self.frac_noise, bool) or not isinstance(self.frac_noise, (int, float, np.number)) \
                or not (0.0 <= float(self.frac_noise) <= 1.0):
            raise ValueError(f"frac_noise must be a number in [0, 1], got {self.frac_noise!r}")
        object.__setattr__(self, "frac_noise", float(self.frac_noise))
        if isinstance(self.min_examples_per_class, bool) or not isinstance(
                self.min_examples_per_class, (int, np.integer)) or self.min_examples_per_class < 0:
            raise ValueError(f"min_examples_per_class must be an integer >= 0, got {self.min_examples_per_class!r}")
        object.__setattr__(self, "min_examples_per_class", int(self.min_examples_per_class))
        if self.num_to_remove_per_class is not None:
            object.__setattr__(self, "num_to_remove_per_class",
                               _counts_per_class(self.num_to_remove_per_class, self.num_classes))
        pruning = {
            "frac_noise": self.frac_noise != 1.0,
            "num_to_remove_per_class": self.num_to_remove_per_class is not None,
            "min_examples_per_class": self.min_examples_per_class != 1,
        }
        given = [name for name, set_ in pruning.items() if set_]
        if self.filter_by is None:
            if given:
                raise ValueError(f"{' and '.join(given)} only appl{'ies' if len(given) == 1 else 'y'} with "
                                 f"filter_by {', '.join(confident_joint.PRUNING_FILTERS)}")
            return
        if given and self.filter_by not in confident_joint.PRUNING_FILTERS:
            # cleanlab refuses num_to_remove_per_class here and ignores the others with a warning.
            raise ValueError(
                f"{' and '.join(given)} only appl{'ies' if len(given) == 1 else 'y'} with filter_by "
                f"{', '.join(confident_joint.PRUNING_FILTERS)}, not {self.filter_by}"
            )
        if self.estimation_method != "off_diagonal":
            raise ValueError(
                "estimation_method only applies without filter_by (the batched method); with filter_by "
                f"{self.filter_by} the issues come from the confident joint"
            )


def _counts_per_class(values: Sequence[int], num_classes: int) -> Tuple[int, ...]:
    """``num_to_remove_per_class`` as a tuple of K non-negative Python ints."""
    if isinstance(values, (str, bytes)):
        raise ValueError(f"num_to_remove_per_class must be {num_classes} integers, got {values!r}")
    values = tuple(values)
    if len(values) != num_classes:
        raise ValueError(f"num_to_remove_per_class needs one count per class ({num_classes}), got {len(values)}")
    out = []
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"num_to_remove_per_class must hold integers >= 0, got {value!r}")
        out.append(int(value))
    return tuple(out)


def default(name: str) -> Any:
    """The default of one ``LabelIssuesOptions`` field (for the command line's help)."""
    for field in dataclasses.fields(LabelIssuesOptions):
        if field.name == name:
            if field.default is dataclasses.MISSING:
                raise KeyError(f"{name} has no default")
            return field.default
    raise KeyError(name)
