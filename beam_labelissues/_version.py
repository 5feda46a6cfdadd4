"""The package version, read by setup.py and reported by ``--version`` and summary.json."""

__version__ = "0.2.0"
