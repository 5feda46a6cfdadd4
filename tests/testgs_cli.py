"""A test-only driver: the command line with the ``testgs://`` filesystem registered.

    python tests/testgs_cli.py [command line options...]

``testgs:///tmp/x`` is the local ``/tmp/x`` seen through a Beam filesystem of its
own (``PrefixedLocalFileSystem`` in tests/input_files.py), so a run whose paths
start with ``testgs://`` goes through every non-local code path (FileSystems,
escaped patterns, the lock object) as it would with gs://. Runs in-process
(FnApiRunner), where the filesystem is registered.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import input_files  # noqa: E402,F401  registers testgs://

from beam_labelissues import cli  # noqa: E402

if __name__ == "__main__":
    cli.run_and_exit(sys.argv[1:])
