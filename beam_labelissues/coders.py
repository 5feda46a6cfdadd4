"""Coders for the batch types: numpy buffers out of band, sizes without encoding.

Beam samples the encoded size of elements for its metrics; the default coder
encodes an element to learn its size, which for a 16 MiB batch costs a full
copy. These coders report the size from the arrays' ``nbytes`` and encode with
pickle protocol 5, which writes numpy buffers in one copy.
"""

from __future__ import annotations

import dataclasses
import pickle
from typing import Any

import apache_beam as beam
import numpy as np

from beam_labelissues.batches import (
    DisagreeingRows,
    ExampleBatch,
    HistogramEntries,
    IssueCandidates,
    JointCounts,
    ScoredBatch,
    SelectionCandidates,
)


def approximate_nbytes(value: Any) -> int:
    """The bytes of the arrays inside a batch (or a list of batches), plus a little."""
    if isinstance(value, np.ndarray):
        return value.nbytes if value.dtype != object else 32 * value.size
    if dataclasses.is_dataclass(value):
        return 64 + sum(approximate_nbytes(getattr(value, f.name)) for f in dataclasses.fields(value))
    if isinstance(value, (list, tuple)):
        return 16 + sum(approximate_nbytes(v) for v in value)
    return 16


class BatchCoder(beam.coders.Coder):
    """Encodes any of the batch dataclasses (or lists of them) with pickle protocol 5."""

    def encode(self, value):
        return pickle.dumps(value, protocol=5)

    def decode(self, encoded):
        return pickle.loads(encoded)

    def estimate_size(self, value):
        return approximate_nbytes(value)

    def is_deterministic(self):
        return False

    def to_type_hint(self):
        return Any

    def __eq__(self, other):
        return type(self) is type(other)

    def __hash__(self):
        return hash(type(self))


for _batch_type in (ExampleBatch, ScoredBatch, IssueCandidates, DisagreeingRows, JointCounts, HistogramEntries,
                    SelectionCandidates):
    beam.coders.registry.register_coder(_batch_type, BatchCoder)
