"""The base of the test drivers' source wrappers (tests/fail_once.py, tests/held_run.py).

A wrapper describes itself as the source it wraps (every attribute ``FindLabelIssues``
reads of a source, so the run plans as it would unwrapped) and reads the same tasks;
a subclass changes only the reading DoFn.
"""

from __future__ import annotations

from beam_labelissues.sources import ExampleSource

_DESCRIBING = ("id_type", "description", "unique_ids", "num_rows", "decoding_costs_more", "decode_threads")


class WrappedSource(ExampleSource):
    def __init__(self, inner: ExampleSource):
        super().__init__(inner.reshuffle)
        self._inner = inner
        for name in _DESCRIBING:
            setattr(self, name, getattr(inner, name))

    def read_tasks(self):
        return self._inner.read_tasks()

    def read_dofn(self):
        return self._inner.read_dofn()
