"""What the report shows, read once from a run's output directory through ``io.outputs``.

Only summary.json and the ``label_issues`` files are read, in one streaming
pass, so the report stays cheap however large the dataset was: the
per-example ``label_quality_scores`` files are never opened.
"""

from __future__ import annotations

import dataclasses
import math
from typing import List, Optional, Sequence

import numpy as np

from beam_labelissues.io import outputs

TOP_ISSUES = 50  # rows in the table of the most severe issues
READ_BATCH_ROWS = 65536
_TOP_COLUMNS = ("rank", "id", "given_label", "predicted_label", "label_quality")


@dataclasses.dataclass
class IssueTable:
    """What the report needs from the issues files, gathered in one streaming pass.

    pair_codes/pair_counts hold a sparse given x predicted count matrix
    (code = given * K + predicted), so memory follows the distinct pairs, not K*K.
    """

    num_rows: int
    pair_codes: np.ndarray
    pair_counts: np.ndarray
    top_rows: List[dict]
    score_counts: Optional[np.ndarray]  # issues per bin of the summary's score histogram
    score_min: Optional[float]
    score_max: Optional[float]


@dataclasses.dataclass
class ReportData:
    """The summary of a run, the aggregates of its issues, and the class names to show."""

    output_dir: str
    summary: outputs.Summary
    issues: IssueTable
    class_names: Optional[List[str]]

    @property
    def num_classes(self) -> int:
        return int(self.summary.num_classes)

    @property
    def issues_per_class(self) -> np.ndarray:
        k = self.num_classes
        return np.bincount(self.issues.pair_codes // k, weights=self.issues.pair_counts, minlength=k).astype(np.int64)

    @property
    def issue_score_range(self) -> Optional[Sequence[float]]:
        if self.summary.issue_score_range is not None:
            return self.summary.issue_score_range
        if self.issues.num_rows:
            return [self.issues.score_min, self.issues.score_max]
        return None

    @classmethod
    def read(cls, output_dir: str, class_names: Optional[Sequence[str]] = None) -> "ReportData":
        """Reads summary.json and streams the issues once; ``class_names`` overrides the summary's."""
        summary = outputs.read_summary(output_dir)
        k = int(summary.num_classes)
        if len(summary.confident_thresholds) != k or len(summary.examples_per_class) != k:
            raise ValueError("summary.json: confident_thresholds and examples_per_class need num_classes entries")
        names = list(class_names) if class_names is not None else summary.class_names
        if names is not None:
            names = [str(n) for n in names]
            if len(names) != k:
                raise ValueError(f"{len(names)} class names given for {k} classes")
        edges = (summary.score_histogram or {}).get("bin_edges") or None
        return cls(output_dir, summary, _read_issues(output_dir, summary, edges), names)


def _merge_pairs(codes: np.ndarray, counts: np.ndarray, new_codes: np.ndarray,
                 new_counts: np.ndarray):
    all_codes = np.concatenate([codes, new_codes])
    all_counts = np.concatenate([counts, new_counts])
    uniq, inverse = np.unique(all_codes, return_inverse=True)
    return uniq, np.bincount(inverse, weights=all_counts, minlength=len(uniq)).astype(np.int64)


def _read_issues(output_dir: str, summary: outputs.Summary, bin_edges: Optional[Sequence[float]]) -> IssueTable:
    """Streams the issues files once: pair counts, score range, score histogram, top rows."""
    num_classes = int(summary.num_classes)
    columns = list(_TOP_COLUMNS) + ["given_label_name", "predicted_label_name"]
    codes = np.zeros(0, np.int64)
    counts = np.zeros(0, np.int64)
    top: List[dict] = []
    num_rows = 0
    score_min, score_max = math.inf, -math.inf
    edges = None if bin_edges is None else np.asarray(bin_edges, dtype=float)
    score_counts = None if edges is None else np.zeros(len(edges) - 1, dtype=np.int64)
    for batch in outputs.iter_label_issue_batches(output_dir, summary, columns, batch_size=READ_BATCH_ROWS):
        missing = set(_TOP_COLUMNS) - set(batch.schema.names)
        if missing:
            raise ValueError(f"the label_issues files in {output_dir} lack the columns {sorted(missing)}")
        if batch.num_rows == 0:
            continue
        num_rows += batch.num_rows
        given = batch.column("given_label").to_numpy(zero_copy_only=False).astype(np.int64)
        pred = batch.column("predicted_label").to_numpy(zero_copy_only=False).astype(np.int64)
        bad = (given < 0) | (given >= num_classes) | (pred < 0) | (pred >= num_classes)
        if bad.any():
            raise ValueError(
                f"label issues hold a label outside 0..{num_classes - 1}: "
                f"given={given[bad][0]}, predicted={pred[bad][0]}"
            )
        batch_codes, batch_counts = np.unique(given * num_classes + pred, return_counts=True)
        codes, counts = _merge_pairs(codes, counts, batch_codes, batch_counts)
        scores = batch.column("label_quality").to_numpy(zero_copy_only=False)
        score_min = min(score_min, float(scores.min()))
        score_max = max(score_max, float(scores.max()))
        if edges is not None:
            score_counts += np.histogram(scores, bins=edges)[0]
        if len(top) < TOP_ISSUES:  # files come in rank order: the first rows are the most severe
            top.extend(batch.slice(0, TOP_ISSUES - len(top)).to_pylist())
    return IssueTable(
        num_rows=num_rows,
        pair_codes=codes,
        pair_counts=counts,
        top_rows=top,
        score_counts=score_counts,
        score_min=None if num_rows == 0 else score_min,
        score_max=None if num_rows == 0 else score_max,
    )
