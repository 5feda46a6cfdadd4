"""Readers that yield ``ExampleBatch`` elements, and the writer of the output directory."""

from beam_labelissues.io.inputs import Inputs, open_inputs
from beam_labelissues.io.npy import NpyPair, ReadNpyExamples
from beam_labelissues.io.outputs import Summary, WriteLabelIssues, read_summary
from beam_labelissues.io.parquet import ParquetDataset, ReadParquetExamples

__all__ = [
    "Inputs",
    "NpyPair",
    "ParquetDataset",
    "ReadNpyExamples",
    "ReadParquetExamples",
    "Summary",
    "WriteLabelIssues",
    "open_inputs",
    "read_summary",
]
