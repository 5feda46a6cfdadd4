"""What the report shows, read once from a run's output directory through ``io.outputs``.

Only summary.json, the ``label_issues`` files and the small health files are read:
the first ``SHOWN_ISSUES`` issues with every column (the page's issues table), then one
streaming pass over a few columns for the aggregates, so the report stays cheap
however large the dataset was. The per-example ``label_quality_scores`` files are
never opened. With a human review, the reviewed issues are found in the same pass.
The health files (``confident_joint``, ``class_health``, ``overlapping_classes``) hold at
most one row per class pair, whatever the number of examples; the ``noise_matrices`` file
is not read.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from beam_labelissues.io import outputs
from beam_labelissues.io.human_review import load_human_review
from beam_labelissues.report import thumbnails

TOP_ISSUES = 50  # rows written into the page itself (what shows without JavaScript)
SHOWN_ISSUES = 10_000  # the most severe issues embedded for sorting and filtering
READ_BATCH_ROWS = 65536
_REQUIRED_COLUMNS = ("rank", "id", "given_label", "predicted_label", "label_quality")
_AGGREGATE_COLUMNS = ["given_label", "predicted_label", "label_quality"]


@dataclasses.dataclass
class HumanReview:
    """How the issues fare against a human review (``*_mturk.json``).

    ``ranks`` are the ranks of the reviewed issues and ``not_upheld`` whether the
    reviewers rejected each one's given label (fewer than 3 of 5 votes for it).
    ``votes`` maps a reviewed id to its votes, for the issues table.
    """

    name: str
    ranks: np.ndarray
    not_upheld: np.ndarray
    votes: Dict[object, dict]

    @property
    def reviewed(self) -> int:
        return int(len(self.ranks))

    @property
    def num_not_upheld(self) -> int:
        return int(self.not_upheld.sum())


@dataclasses.dataclass
class IssueTable:
    """What the report needs from the issues files.

    pair_codes/pair_counts hold a sparse given x predicted count matrix
    (code = given * K + predicted), so memory follows the distinct pairs, not K*K.
    ``shown`` holds the most severe issues with every column, in rank order.
    """

    num_rows: int
    pair_codes: np.ndarray
    pair_counts: np.ndarray
    shown: pa.Table
    score_counts: Optional[np.ndarray]  # issues per bin of the summary's score histogram
    score_min: Optional[float]
    score_max: Optional[float]

    @property
    def top_rows(self) -> List[dict]:
        """The TOP_ISSUES most severe issues as dicts."""
        return self.shown.slice(0, TOP_ISSUES).to_pylist()


@dataclasses.dataclass
class DatasetHealth:
    """The dataset's health: summary.json's figures and the health files, as the run wrote them.

    Each part is None where the run did not write it (a version before the health files;
    a run without a valid example). ``classes`` and ``overlapping`` are sorted as the
    output contract orders them, whatever order their files came in.
    """

    overall_label_health_score: Optional[float]
    num_confident_learning_issues: Optional[int]
    # the calibrated confident joint's non-zero cells (int64 arrays of one length)
    joint_given: Optional[np.ndarray]
    joint_likely_true: Optional[np.ndarray]
    joint_counts: Optional[np.ndarray]
    classes: Optional[pa.Table]  # class_health: by label_quality_score ascending, ties by class index
    overlapping: Optional[pa.Table]  # overlapping_classes: by joint_probability descending, ties by (a, b)
    files: List[str] = dataclasses.field(default_factory=list)  # the health files read

    @property
    def has_joint(self) -> bool:
        return self.joint_counts is not None


@dataclasses.dataclass
class ReportData:
    """The summary of a run, the aggregates of its issues, and the class names to show."""

    output_dir: str
    summary: outputs.Summary
    issues: IssueTable
    class_names: Optional[List[str]]
    review: Optional[HumanReview] = None
    thumbnails: Dict[int, str] = dataclasses.field(default_factory=dict)  # shown row -> data URI
    health: Optional[DatasetHealth] = None  # None for an output without any health figure

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
    def read(cls, output_dir: str, class_names: Optional[Sequence[str]] = None,
             human_review: Union[str, Dict[int, dict], None] = None) -> "ReportData":
        """Reads summary.json and the issues; ``class_names`` overrides the summary's.

        ``human_review``: a ``*_mturk.json`` path (or its loaded content) to compare the issues with.
        """
        summary = outputs.read_summary(output_dir)
        k = int(summary.num_classes)
        if len(summary.confident_thresholds) != k or len(summary.examples_per_class) != k:
            raise ValueError("summary.json: confident_thresholds and examples_per_class need num_classes entries")
        names = list(class_names) if class_names is not None else summary.class_names
        if names is not None:
            names = [str(n) for n in names]
            if len(names) != k:
                raise ValueError(f"{len(names)} class names given for {k} classes")
        review_name = "human review"
        if isinstance(human_review, str):
            review_name = human_review.rstrip("/").rsplit("/", 1)[-1]
            human_review = load_human_review(human_review)
        edges = (summary.score_histogram or {}).get("bin_edges") or None
        shown = _read_shown(output_dir, summary)
        issues, review = _read_issues(output_dir, summary, edges, shown, human_review, review_name)
        images = thumbnails.thumbnails(shown.column("uri").to_pylist()) if "uri" in shown.schema.names else {}
        return cls(output_dir, summary, issues, names, review, images, _read_health(output_dir, summary))


def _read_shown(output_dir: str, summary: outputs.Summary) -> pa.Table:
    """The SHOWN_ISSUES most severe issues with every column (files come in rank order)."""
    parts: List[pa.RecordBatch] = []
    rows = 0
    for batch in outputs.iter_label_issue_batches(output_dir, summary, batch_size=min(SHOWN_ISSUES, READ_BATCH_ROWS)):
        missing = set(_REQUIRED_COLUMNS) - set(batch.schema.names)
        if missing:
            raise ValueError(f"the label_issues files in {output_dir} lack the columns {sorted(missing)}")
        parts.append(batch.slice(0, SHOWN_ISSUES - rows))
        rows += parts[-1].num_rows
        if rows >= SHOWN_ISSUES:
            break
    return pa.Table.from_batches(parts) if parts else pa.table({c: [] for c in _REQUIRED_COLUMNS})


def _merge_pairs(codes: np.ndarray, counts: np.ndarray, new_codes: np.ndarray,
                 new_counts: np.ndarray):
    all_codes = np.concatenate([codes, new_codes])
    all_counts = np.concatenate([counts, new_counts])
    uniq, inverse = np.unique(all_codes, return_inverse=True)
    return uniq, np.bincount(inverse, weights=all_counts, minlength=len(uniq)).astype(np.int64)


def _review_ids(review: Dict[int, dict], id_type: pa.DataType) -> pa.Array:
    ids = pa.array(sorted(review), pa.int64())
    return pc.cast(ids, id_type if pa.types.is_integer(id_type) else pa.string()).cast(id_type)


def _read_issues(output_dir: str, summary: outputs.Summary, bin_edges: Optional[Sequence[float]],
                 shown: pa.Table, review: Optional[Dict[int, dict]], review_name: str):
    """Streams the issues files once: pair counts, score range, score histogram, reviewed ranks."""
    num_classes = int(summary.num_classes)
    columns = list(_AGGREGATE_COLUMNS) + (["rank", "id"] if review is not None else [])
    codes = np.zeros(0, np.int64)
    counts = np.zeros(0, np.int64)
    num_rows = 0
    score_min, score_max = math.inf, -math.inf
    edges = None if bin_edges is None else np.asarray(bin_edges, dtype=float)
    score_counts = None if edges is None else np.zeros(len(edges) - 1, dtype=np.int64)
    reviewed_ranks: List[np.ndarray] = []
    reviewed_ids: List[list] = []
    review_set = None
    for batch in outputs.iter_label_issue_batches(output_dir, summary, columns, batch_size=READ_BATCH_ROWS):
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
        if review is not None:
            ids = batch.column("id")
            if review_set is None:
                review_set = _review_ids(review, ids.type)
            hit = pc.is_in(ids, value_set=review_set)
            if pc.any(hit).as_py():
                reviewed_ranks.append(pc.filter(batch.column("rank"), hit).to_numpy(zero_copy_only=False))
                reviewed_ids.append(pc.filter(ids, hit).to_pylist())
    human = None
    if review is not None:
        ids = [i for part in reviewed_ids for i in part]
        votes = {i: review[int(i)] for i in ids}
        human = HumanReview(
            name=review_name,
            ranks=np.concatenate(reviewed_ranks) if reviewed_ranks else np.zeros(0, np.int64),
            not_upheld=np.array([votes[i]["given"] < 3 for i in ids], dtype=bool),
            votes=votes,
        )
    issues = IssueTable(
        num_rows=num_rows,
        pair_codes=codes,
        pair_counts=counts,
        shown=shown,
        score_counts=score_counts,
        score_min=None if num_rows == 0 else score_min,
        score_max=None if num_rows == 0 else score_max,
    )
    return issues, human


_JOINT_COLUMNS = ("given_label", "likely_true_label", "count")
_CLASS_HEALTH_COLUMNS = ("class_index", "label_issues", "inverse_label_issues", "label_noise",
                         "inverse_label_noise", "label_quality_score")
_OVERLAP_COLUMNS = ("class_index_a", "class_index_b", "num_overlapping_examples", "joint_probability")


def _health_table(output_dir: str, summary: outputs.Summary, prefix: str,
                  columns: Sequence[str], class_columns: Sequence[str]) -> Optional[pa.Table]:
    """One health table with only ``columns`` (the name columns are not needed: the report
    names classes from ``class_names``), or None; its class columns must lie in 0..K-1."""
    table = outputs.read_health_table(output_dir, summary, prefix)
    if table is None:
        return None
    missing = set(columns) - set(table.schema.names)
    if missing:
        raise ValueError(f"the {prefix} file(s) in {output_dir} lack the columns {sorted(missing)}")
    table = table.select(list(columns))
    k = int(summary.num_classes)
    for name in class_columns:
        low, high = pc.min_max(table.column(name)).values()
        if table.num_rows and (low.as_py() < 0 or high.as_py() >= k):
            raise ValueError(f"the {prefix} file(s) in {output_dir} hold a class outside 0..{k - 1} in {name}")
    return table


def _read_health(output_dir: str, summary: outputs.Summary) -> Optional[DatasetHealth]:
    """The summary's health figures and the health files the report draws, each read once."""
    joint = _health_table(output_dir, summary, outputs.CONFIDENT_JOINT_PREFIX, _JOINT_COLUMNS, _JOINT_COLUMNS[:2])
    classes = _health_table(output_dir, summary, outputs.CLASS_HEALTH_PREFIX, _CLASS_HEALTH_COLUMNS,
                            _CLASS_HEALTH_COLUMNS[:1])
    overlapping = _health_table(output_dir, summary, outputs.OVERLAPPING_CLASSES_PREFIX, _OVERLAP_COLUMNS,
                                _OVERLAP_COLUMNS[:2])
    score, num_issues = summary.overall_label_health_score, summary.num_confident_learning_issues
    if joint is None and classes is None and overlapping is None and score is None and num_issues is None:
        return None
    if classes is not None:
        classes = classes.sort_by([("label_quality_score", "ascending"), ("class_index", "ascending")])
    if overlapping is not None:
        overlapping = overlapping.sort_by([("joint_probability", "descending"), ("class_index_a", "ascending"),
                                           ("class_index_b", "ascending")])
    columns = [None, None, None] if joint is None else [
        joint.column(name).to_numpy().astype(np.int64, copy=False) for name in _JOINT_COLUMNS]
    files = summary.confident_joint_files + summary.class_health_files + summary.overlapping_classes_files
    return DatasetHealth(
        overall_label_health_score=None if score is None else float(score),
        num_confident_learning_issues=None if num_issues is None else int(num_issues),
        joint_given=columns[0],
        joint_likely_true=columns[1],
        joint_counts=columns[2],
        classes=classes,
        overlapping=overlapping,
        files=list(files),
    )
