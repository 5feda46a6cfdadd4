"""Whether an output path can be used, said in one line before anything runs.

Beam's FileSystems pick a filesystem by the path's scheme: local paths always,
``gs://`` with apache-beam[gcp] and ``s3://`` with apache-beam[aws] (the ``gcp`` and
``aws`` extras of this package). An unknown scheme, a missing extra or a location
that cannot be reached becomes a ``UsageError`` naming the path, the cause and the
install that adds the filesystem, instead of a traceback from deep inside Beam.
"""

from __future__ import annotations

from typing import Optional

from apache_beam.io.filesystems import FileSystems

from beam_labelissues.validation import UsageError

# The extra of this package that brings each scheme's filesystem.
EXTRA_FOR_SCHEME = {"gs": "gcp", "s3": "aws"}


def scheme(path: str) -> Optional[str]:
    """``gs`` for ``gs://bucket/x``; None for a local path."""
    head, separator, _ = path.partition("://")
    return head.lower() if separator else None


def install_hint(path: str) -> str:
    """' (pip install ... adds gs://)' for a scheme one of our extras adds; else ''."""
    extra = EXTRA_FOR_SCHEME.get(scheme(path) or "")
    return f" (pip install 'beam-labelissues[{extra}]' adds {scheme(path)}://)" if extra else ""


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())


def check_output_location(path: str, option: str = "--output") -> None:
    """Raises ``UsageError`` when no filesystem handles ``path``; touches nothing."""
    try:
        FileSystems.get_filesystem(path)
    except ValueError as error:
        hint = install_hint(path) or (
            " (usable: local paths, gs:// with beam-labelissues[gcp], s3:// with beam-labelissues[aws])"
        )
        raise UsageError(f"{option} {path}: no filesystem handles {scheme(path)}:// paths{hint}") from error
