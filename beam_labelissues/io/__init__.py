"""Readers that yield ``ExampleBatch`` elements, and the writer of the output directory."""

from beam_labelissues.io.npy import InputFileError, NpyPair, ReadNpyExamples, read_npy_header

__all__ = ["InputFileError", "NpyPair", "ReadNpyExamples", "read_npy_header"]
