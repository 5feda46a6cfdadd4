"""A human review of flagged examples (``*_mturk.json``), and how the issues fare against it.

The format is the one of the "pervasive label errors" study: a JSON list of
``{"id": row index, "mturk": {"given": votes, ...}}`` with five reviewers per example.
"""

from __future__ import annotations

import json
from typing import Dict, Iterable

from apache_beam.io.filesystems import FileSystems


def load_human_review(path: str) -> Dict[int, dict]:
    """Reads a review (local, gs:// or s3://): row id -> the reviewers' votes."""
    with FileSystems.open(path) as handle:
        return {int(entry["id"]): entry["mturk"] for entry in json.loads(handle.read().decode("utf-8"))}


def review_of_issues(issue_ids: Iterable[int], review: Dict[int, dict]) -> Dict[str, int]:
    """How many flagged examples were reviewed, and how many of those the reviewers rejected.

    Reviewers did not uphold a given label when fewer than 3 of the 5 voted for it.
    """
    reviewed = [review[i] for i in issue_ids if i in review]
    return {
        "reviewed": len(reviewed),
        "not_upheld": sum(1 for votes in reviewed if votes["given"] < 3),
    }
