"""Find label issues in classification datasets of any size with Apache Beam.

Confident learning as in cleanlab's ``find_label_issues_batched`` / ``LabelInspector``
(cleanlab 2.9): per-class confident thresholds, a label quality score per example,
an estimate of the number of issues, and the issues ranked from most to least severe;
with ``filter_by``, cleanlab's full ``filter.find_label_issues`` instead; in every run the
dataset's health (calibrated confident joint, class and overlap tables, noise matrices).

The pipeline pieces: ``FindLabelIssues`` (a PTransform) with ``LabelIssuesOptions``,
readers ``ReadNpyExamples`` / ``ReadParquetExamples`` (or your own ``ExampleBatch``
PCollection), ``FindLabelIssuesInExamples`` / ``ExamplesToBatches`` for one element per
example (dicts, ``beam.Row``, RunInference results), and ``WriteLabelIssues`` for the
output directory.
"""

from beam_labelissues import processes as _processes
from beam_labelissues._version import __version__
from beam_labelissues.api import LabelInspector, find_label_issues_batched
from beam_labelissues.batches import ExampleBatch
from beam_labelissues.examples import ExamplesToBatches, FindLabelIssuesInExamples
from beam_labelissues.io import NpyPair, ParquetDataset, ReadNpyExamples, ReadParquetExamples
from beam_labelissues.io.outputs import Summary, WriteLabelIssues, read_summary
from beam_labelissues.options import LabelIssuesOptions
from beam_labelissues.transforms import FindLabelIssues, LabelIssuesResult, RankedIssues
from beam_labelissues.validation import InputFileError, InvalidRecordError, LabelIssuesError, UsageError

# In a worker process the command line started: exit when the command line is gone.
_processes.guard_worker_process()

__all__ = [
    "ExampleBatch",
    "ExamplesToBatches",
    "FindLabelIssues",
    "FindLabelIssuesInExamples",
    "InputFileError",
    "InvalidRecordError",
    "LabelInspector",
    "LabelIssuesError",
    "LabelIssuesOptions",
    "LabelIssuesResult",
    "NpyPair",
    "ParquetDataset",
    "RankedIssues",
    "ReadNpyExamples",
    "ReadParquetExamples",
    "Summary",
    "UsageError",
    "WriteLabelIssues",
    "__version__",
    "find_label_issues_batched",
    "read_summary",
]
