"""The shape every file reader shares: small read tasks, and a DoFn that reads one.

A pass over the data is ``Create(tasks) | ParDo(read)``; ``FindLabelIssues``
applies a source once per pass, so each pass reads the files again and nothing
of the dataset's size is held between passes. Readers of every format share
this shape, so a new format only says how to split and how to read one piece.
"""

from __future__ import annotations

from typing import Any, List, Optional

import apache_beam as beam
import pyarrow as pa


class ExampleSource(beam.PTransform):
    """A re-readable source of ``ExampleBatch`` elements.

    Subclasses give ``read_tasks()`` (a list of small picklable descriptions, such
    as row ranges or row groups) and ``read_dofn()`` (a DoFn turning one task
    into ``ExampleBatch`` elements). Applied on its own it reads everything once.

    ``reshuffle`` spreads the tasks over workers (what Dataflow, Flink and several
    local workers need); a single in-process worker gains nothing from it but
    an extra stage per pass.

    ``id_type`` is the Arrow type of the ids the source yields and ``description``
    says in a line what it reads (it goes into summary.json). ``decoding_costs_more``
    says that reading the data again costs more than holding the few rows the
    model disagrees with (compressed, columnar formats): ``FindLabelIssues`` then
    reads it one time less (see ``LabelIssuesOptions.hold_disagreeing_rows``).
    ``unique_ids`` is True when the ids cannot repeat (row numbers); otherwise
    ``FindLabelIssues`` checks them (see duplicates.py). ``num_rows`` is the number
    of rows when the source knows it before reading (None otherwise); ``decode_threads``
    the threads each reading worker runs beside its own (to size the local workers).
    """

    id_type: pa.DataType = pa.int64()
    description: str = ""
    decoding_costs_more: bool = False
    unique_ids: bool = False
    num_rows: Optional[int] = None
    decode_threads: int = 0

    def __init__(self, reshuffle: bool = True):
        super().__init__()
        self.reshuffle = reshuffle

    def read_tasks(self) -> List[Any]:
        raise NotImplementedError

    def read_dofn(self) -> beam.DoFn:
        raise NotImplementedError

    def expand(self, pbegin):
        return (
            pbegin
            | "ReadTasks" >> beam.Create(self.read_tasks(), reshuffle=self.reshuffle)
            | "Read" >> beam.ParDo(self.read_dofn())
        )
