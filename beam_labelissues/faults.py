"""Fault injection for tests: make one pipeline step fail on its first attempt only.

Set the environment variable ``BEAM_LABELISSUES_FAIL_ONCE`` to ``STEP:MARKER_PATH``
before starting a pipeline. The first call of ``maybe_fail_once(STEP)`` in any worker
then creates ``MARKER_PATH`` (atomically: ``O_CREAT | O_EXCL``, so exactly one caller
wins even with several workers) and raises ``RuntimeError``; every later call, in any
process that sees the same file, finds the marker and does nothing. A runner that
retries failed work (Flink with a restart strategy) therefore finishes; one that
cannot retry fails the run.

Steps that call it:

- ``score``: the start of ``ScoreLabelQuality.process`` (each scoring pass);
- ``thresholds``: the start of ``ConfidentThresholdsFn.add_input``.

Unset (the normal case), ``maybe_fail_once`` only reads one environment variable.
The variable must reach the worker: it does with LOOPBACK environments (the worker
runs in the launching process) and with the DirectRunner's worker subprocesses,
which inherit the launcher's environment; on a remote cluster it does not.
"""

from __future__ import annotations

import os

ENV_VAR = "BEAM_LABELISSUES_FAIL_ONCE"


class InjectedFailure(RuntimeError):
    """The failure ``maybe_fail_once`` raises; a RuntimeError."""


def maybe_fail_once(step: str) -> None:
    """Raises ``InjectedFailure`` the first time ``step`` runs, if the environment asks."""
    spec = os.environ.get(ENV_VAR)
    if not spec:
        return
    wanted, sep, marker = spec.partition(":")
    if not sep or not marker:
        raise ValueError(f"{ENV_VAR} must be STEP:MARKER_PATH, got {spec!r}")
    if wanted != step:
        return
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return  # failed once already: let this attempt through
    try:
        os.write(fd, f"{step} failed once in pid {os.getpid()}\n".encode("utf-8"))
    finally:
        os.close(fd)
    raise InjectedFailure(f"injected failure in step {step!r} (first attempt; marker {marker})")
