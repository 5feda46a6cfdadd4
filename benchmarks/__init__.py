"""The side-by-side benchmark of beam-labelissues (see benchmarks/README.md).

Not part of the installed package. ``run_benchmark.py`` is the driver;
``child.py`` is the child process of the contenders that run in Python.
"""
