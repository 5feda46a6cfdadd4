"""A test-only driver: the command line, with a reader that fails once in one pass.

    python tests/fail_once.py PASS MARKER [command line options...]

runs ``beam_labelissues.cli.main`` with the input source wrapped so that the read
of pass number PASS (0 = the first pass over the data, -1 = the last) raises on
its first attempt. The first failing read creates MARKER (``O_CREAT | O_EXCL``, so
exactly one attempt in any worker process wins) holding its process id; later
attempts find it and read normally. A runner that retries failed work (Flink with
a restart strategy) therefore finishes; one that cannot retry fails the run.
Nothing of this is in the package: it wraps the ``source`` seam of the pipeline.
"""

from __future__ import annotations

import os
import sys

import apache_beam as beam

from beam_labelissues import cli
from beam_labelissues.sources import ExampleSource
from wrapped_source import WrappedSource


class InjectedFailure(RuntimeError):
    """The failure a ``FailOnceRead`` raises."""


class FailOnceRead(beam.DoFn):
    """Wraps a reader DoFn; the first call of ``process`` anywhere raises (when armed)."""

    def __init__(self, inner: beam.DoFn, marker: str, armed: bool):
        self._inner = inner
        self._marker = marker
        self._armed = armed

    def setup(self):
        self._inner.setup()

    def process(self, task):
        if self._armed:
            try:
                fd = os.open(self._marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                pass  # failed once already: let this attempt through
            else:
                os.write(fd, str(os.getpid()).encode("ascii"))
                os.close(fd)
                raise InjectedFailure(f"injected failure in the read of a pass (marker {self._marker})")
        yield from self._inner.process(task)


class FailOnceSource(WrappedSource):
    """An ``ExampleSource`` whose read fails once in the ``fail_pass``-th pass over the data."""

    def __init__(self, inner: ExampleSource, fail_pass: int, marker: str, num_passes: int):
        super().__init__(inner)
        self._fail_pass = fail_pass % num_passes
        self._marker = marker
        self._applied = 0

    def read_dofn(self):
        armed = self._applied == self._fail_pass
        self._applied += 1
        return FailOnceRead(self._inner.read_dofn(), self._marker, armed)


def main(argv):
    fail_pass, marker, cli_args = int(argv[0]), argv[1], argv[2:]
    # The passes over the data FindLabelIssues makes with these options (it reads the
    # source once per pass): count them by building the pipeline once without running it.
    counter = []

    def count(source):
        counter.append(_Counting(source))
        return counter[-1]

    cli.build_pipeline(*cli.parse_args(cli_args), source_wrapper=count)
    num_passes = counter[-1].applied

    def wrap(source):
        return FailOnceSource(source, fail_pass, marker, num_passes)

    return cli.main(cli_args, source_wrapper=wrap)


class _Counting(WrappedSource):
    """Counts how often the pipeline reads a source (once per pass)."""

    def __init__(self, inner: ExampleSource):
        super().__init__(inner)
        self.applied = 0

    def read_dofn(self):
        self.applied += 1
        return self._inner.read_dofn()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
