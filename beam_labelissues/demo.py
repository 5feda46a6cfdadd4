"""The bundled demo data: real MNIST test-set predictions and their human review.

From the "pervasive label errors" study (Northcutt, Athalye and Mueller, 2021),
Apache-2.0; see demo_data/LICENSE and demo_data/NOTICE.
"""

from __future__ import annotations

import json
import os
from typing import Dict, Iterable

DEMO_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "demo_data")
DEMO_LABELS = os.path.join(DEMO_DIR, "mnist_test_set_labels.npy")
DEMO_PRED_PROBS = os.path.join(DEMO_DIR, "mnist_test_set_pred_probs.npy")
DEMO_HUMAN_REVIEW = os.path.join(DEMO_DIR, "mnist_mturk.json")


def load_human_review(path: str) -> Dict[int, dict]:
    """Reads a ``*_mturk.json`` review (local, gs:// or s3://): row id -> the votes of five reviewers."""
    from apache_beam.io.filesystems import FileSystems

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
