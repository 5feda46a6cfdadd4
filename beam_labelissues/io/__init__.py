"""Readers that yield ``ExampleBatch`` elements, and the writer of the output directory."""

from beam_labelissues.io.npy import InputFileError, NpyPair, ReadNpyExamples, read_npy_header
from beam_labelissues.io.parquet import ParquetDataset, ReadParquetExamples

__all__ = [
    "InputFileError",
    "NpyPair",
    "ParquetDataset",
    "ReadNpyExamples",
    "ReadParquetExamples",
    "read_npy_header",
]
