#!/usr/bin/env python
"""Finds label issues with Apache Beam: the launcher the Dataflow Flex Template runs.

The same command line as ``beam-labelissues`` (see ``beam_labelissues.cli``);
run it with no arguments to find the label issues of the bundled MNIST demo data.
"""

from beam_labelissues.cli import run_and_exit

if __name__ == "__main__":
    run_and_exit()
