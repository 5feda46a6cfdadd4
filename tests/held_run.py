"""A test-only driver: the command line, with every read of the input held until a gate file exists.

    python tests/held_run.py GATE [command line options...]

runs the command line as its console entry point does (``cli.run_and_exit``:
interrupts handled, watchdog started) with the input source wrapped so that each
read task creates ``GATE.reached`` and waits until the file GATE exists. The run
has then taken its output directory (lock, staging directory) and stays in the
middle of its pipeline, in every worker process, for as long as the test wants:
what a second run into the same directory, or a signal, meets then does not
depend on how fast the machine is. The ``testgs://`` filesystem
(tests/input_files.py) is registered too. Nothing of this is in the package: it
wraps the ``source`` seam of the pipeline, as tests/fail_once.py does.
"""

from __future__ import annotations

import os
import sys
import time

import apache_beam as beam

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import input_files  # noqa: E402,F401  registers testgs://

from beam_labelissues import cli  # noqa: E402
from beam_labelissues.sources import ExampleSource  # noqa: E402
from wrapped_source import WrappedSource  # noqa: E402


class HeldRead(beam.DoFn):
    """Wraps a reader DoFn; each task waits for the gate file, then reads normally."""

    def __init__(self, inner: beam.DoFn, gate: str):
        self._inner = inner
        self._gate = gate

    def setup(self):
        self._inner.setup()

    def process(self, task):
        if not os.path.exists(self._gate):
            with open(self._gate + ".reached", "a"):
                pass
        while not os.path.exists(self._gate):
            time.sleep(0.05)
        yield from self._inner.process(task)


class HeldSource(WrappedSource):
    def __init__(self, inner: ExampleSource, gate: str):
        super().__init__(inner)
        self._gate = gate

    def read_dofn(self):
        return HeldRead(self._inner.read_dofn(), self._gate)


def main(argv):
    gate, cli_args = argv[0], argv[1:]
    cli.run_and_exit(cli_args, source_wrapper=lambda source: HeldSource(source, gate))


if __name__ == "__main__":
    main(sys.argv[1:])
