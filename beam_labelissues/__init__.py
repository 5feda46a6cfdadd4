"""Find label issues in classification datasets of any size with Apache Beam.

Confident learning as in cleanlab's ``find_label_issues_batched`` / ``LabelInspector``
(cleanlab 2.9): per-class confident thresholds, a label quality score per example,
an estimate of the number of issues, and the issues ranked from most to least severe.
"""

from beam_labelissues.api import LabelInspector, find_label_issues_batched
from beam_labelissues.batches import ExampleBatch
from beam_labelissues.io.npy import InputFileError
from beam_labelissues.transforms import (
    FindLabelIssues,
    InvalidRecordError,
    LabelIssuesOptions,
    LabelIssuesResult,
)

__version__ = "0.1.0"

__all__ = [
    "ExampleBatch",
    "FindLabelIssues",
    "InputFileError",
    "InvalidRecordError",
    "LabelInspector",
    "LabelIssuesOptions",
    "LabelIssuesResult",
    "__version__",
    "find_label_issues_batched",
]
