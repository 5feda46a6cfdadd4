"""Duplicate ids among the examples that can be label issues.

Issues are ranked by (score, id): two examples with the same id and score would
be ordered by the input order, and the choice among the rows of the cutoff bin
too. So ``FindLabelIssues`` checks, exactly, that no two of its *issue
candidates* share an id: every row below the cutoff bin that the model disagrees
with, and every row of the cutoff bin (candidates are about as many as the
issues, never more than the rows below and in that bin). Two such rows with the
same id fail the run with ``DuplicateIdError`` naming the id.

What is guaranteed: when a run finishes, no two issues share an id, and the
issues, their ranks and every output file are the same for any order of the
input rows. Duplicate ids among the other rows are not looked for: such rows are
never issues, and everything else about them (counts, thresholds, scores) is
computed row by row or summed, so they cannot change any output.

Readers whose ids are row numbers (.npy, Parquet without an id column) have
unique ids by construction (``ExampleSource.unique_ids``) and skip the check.

The ids are spread over ``NUM_BUCKETS`` groups by a hash that is the same in
every worker process, so no worker holds more than its share of them.
"""

from __future__ import annotations

import zlib
from typing import Iterable, Iterator, Tuple

import apache_beam as beam
import numpy as np

from beam_labelissues.batches import IssueCandidates
from beam_labelissues.validation import DuplicateIdError

NUM_BUCKETS = 16
# Duplicate ids named in the error message.
_SHOWN = 3


def id_buckets(ids: np.ndarray, num_buckets: int) -> np.ndarray:
    """A bucket in [0, num_buckets) for each id, the same in every process.

    Integer ids by their value; string ids by the CRC-32 of their UTF-8 bytes
    (Python's own ``hash`` of a string differs between processes).
    """
    if ids.dtype.kind in "iu":
        return np.mod(ids.astype(np.int64, copy=False), num_buckets)
    codes = [zlib.crc32(value if isinstance(value, bytes) else str(value).encode("utf-8")) for value in ids]
    return np.asarray(codes, dtype=np.int64) % num_buckets


class _IdsByBucket(beam.DoFn):
    def process(self, ids: np.ndarray) -> Iterator[Tuple[int, np.ndarray]]:
        if len(ids) == 0:
            return
        buckets = id_buckets(ids, NUM_BUCKETS)
        for bucket in np.unique(buckets).tolist():
            yield int(bucket), ids[buckets == bucket]


def _check_bucket(keyed: Tuple[int, Iterable[np.ndarray]]) -> int:
    """Raises ``DuplicateIdError`` when an id occurs twice in the bucket; returns its id count."""
    _, parts = keyed
    parts = [part for part in parts if len(part)]
    if not parts:
        return 0
    ids = np.concatenate(parts) if len(parts) > 1 else parts[0]
    if ids.dtype == object:
        ids = ids.astype(str)
    values, counts = np.unique(ids, return_counts=True)
    repeated = np.flatnonzero(counts > 1)
    if len(repeated):
        shown = ", ".join(f"{values[i].item()!r} ({counts[i]} times)" for i in repeated[:_SHOWN])
        more = f" and {len(repeated) - _SHOWN} more" if len(repeated) > _SHOWN else ""
        raise DuplicateIdError(
            f"duplicate ids among the examples that can be label issues: {shown}{more}; ids must be "
            "unique, or the ranking (ties broken by id) would depend on the input order"
        )
    return len(ids)


class CheckUniqueCandidateIds(beam.PTransform):
    """Fails the pipeline when two issue candidates share an id.

    Applied to a tuple of PCollections of ``IssueCandidates`` (or of
    ``(key, IssueCandidates)``); its output is one element, the number of ids
    checked, once every bucket passed.
    """

    def expand(self, parts):
        ids = [pcoll | f"Ids{i}" >> beam.Map(lambda part: candidates_of(part).ids) for i, pcoll in enumerate(parts)]
        return (
            ids
            | "AllIds" >> beam.Flatten()
            | "IdsByBucket" >> beam.ParDo(_IdsByBucket())
            | "GroupByBucket" >> beam.GroupByKey()
            | "NoIdTwice" >> beam.Map(_check_bucket)
            | "IdsChecked" >> beam.CombineGlobally(sum)
        )


def candidates_of(part) -> IssueCandidates:
    """The ``IssueCandidates`` of an element of either candidate PCollection."""
    return part[1] if isinstance(part, tuple) else part
