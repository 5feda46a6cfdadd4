"""The settings of one confident-learning run, named as in cleanlab, with their defaults.

``FindLabelIssues`` takes a ``LabelIssuesOptions``; the command line reads every
default from here, so each is declared once.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Optional

import numpy as np

from beam_labelissues import kernels

ON_INVALID_CHOICES = ("fail", "skip")
# The most classes a run accepts. Per-class arrays and lists are allocated before any
# data is read (and for every combine accumulator), and summary.json lists every
# class, so K costs time and memory even when the input has zero rows. Measured on
# a zero-row input: 10^5 classes 5 s and 330 MB in all; 10^6 classes 42 s and 1 GB.
MAX_NUM_CLASSES = 100_000


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
      with_scores: also produce every example's score and issue flag.
      max_issues_per_worker: the most issues one worker ranks at once; more are
        ranked in score ranges on separate workers. Results never depend on it.
    """

    num_classes: int
    method: str = "self_confidence"
    adjust_pred_probs: bool = False
    estimation_method: str = "off_diagonal"
    tolerance: float = 1e-4
    on_invalid: str = "fail"
    row_sum_tolerance: Optional[float] = 1e-2
    with_scores: bool = False
    max_issues_per_worker: int = 1 << 16

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
        if isinstance(self.max_issues_per_worker, bool) or int(self.max_issues_per_worker) < 1:
            raise ValueError(f"max_issues_per_worker must be >= 1, got {self.max_issues_per_worker!r}")


def default(name: str) -> Any:
    """The default of one ``LabelIssuesOptions`` field (for the command line's help)."""
    for field in dataclasses.fields(LabelIssuesOptions):
        if field.name == name:
            if field.default is dataclasses.MISSING:
                raise KeyError(f"{name} has no default")
            return field.default
    raise KeyError(name)
