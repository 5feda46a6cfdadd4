"""A human review of flagged examples (``*_mturk.json``), and how the issues fare against it.

The format is the one of the "pervasive label errors" study: a JSON list of
``{"id": row index, "mturk": {"given": votes, ...}}`` with five reviewers per example.
"""

from __future__ import annotations

import json
from typing import Dict, Iterable

from apache_beam.io.filesystems import FileSystems

from beam_labelissues.io import paths


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def load_human_review(path: str) -> Dict[int, dict]:
    """Reads a review (local, gs:// or s3://): row id -> the reviewers' votes.

    Every entry is checked, so a file that cannot be used fails here, before the
    run, with ValueError naming the file and the first problem.
    """
    kind = paths.non_regular_kind(path)
    if kind:
        raise ValueError(f"human review {path} is a {kind}, not a file")
    try:
        if not paths.exists(path):
            raise ValueError(f"human review {path}: no such file")
        with FileSystems.open(path) as handle:
            text = handle.read().decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"human review {path} is not UTF-8 text: {error}") from None
    except ValueError:
        raise
    except Exception as error:  # OSError, BeamIOError
        raise ValueError(f"human review {path} cannot be read: {error}") from None
    try:
        entries = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"human review {path} is not valid JSON: {error}") from None
    if not isinstance(entries, list):
        raise ValueError(f"human review {path} must hold a JSON list of reviewed examples")
    review = {}
    for position, entry in enumerate(entries):
        where = f"human review {path}, entry {position}"
        if not isinstance(entry, dict):
            raise ValueError(f"{where}: expected an object with 'id' and 'mturk', got {type(entry).__name__}")
        example_id, votes = entry.get("id"), entry.get("mturk")
        if isinstance(example_id, bool) or not isinstance(example_id, int):
            raise ValueError(f"{where}: 'id' must be an integer row index, got {example_id!r}")
        if not isinstance(votes, dict) or not _is_count(votes.get("given")):
            raise ValueError(f"{where}: 'mturk' must hold the reviewers' votes, with 'given' a count")
        review[example_id] = votes
    return review


def review_of_issues(issue_ids: Iterable[int], review: Dict[int, dict]) -> Dict[str, int]:
    """How many flagged examples were reviewed, and how many of those the reviewers rejected.

    Reviewers did not uphold a given label when fewer than 3 of the 5 voted for it.
    """
    reviewed = [review[i] for i in issue_ids if i in review]
    return {
        "reviewed": len(reviewed),
        "not_upheld": sum(1 for votes in reviewed if votes["given"] < 3),
    }
