"""Writes a ``LabelIssuesResult`` to an output directory, summary.json last.

Layout (a contract other tools read):

- ``label_issues-RRRRR-of-NNNNN.parquet``: the ranked issues, one file per score range
  (at least one, even when empty; ``rank`` is global);
- ``label_quality_scores-*.parquet``: every example, with ``--write_scores``;
- ``invalid_records-*.jsonl``: the records left out, with ``on_invalid='skip'``;
- ``summary.json``: written after every other file is complete, through a
  temporary name and a rename, so its presence means the run finished.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Callable, Dict, List, Optional, Sequence

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from beam_labelissues import tables
from beam_labelissues.batches import IssueCandidates
from beam_labelissues.transforms import LabelIssuesResult

SUMMARY_FILE = "summary.json"
ISSUES_PREFIX = "label_issues"
SCORES_PREFIX = "label_quality_scores"
INVALID_PREFIX = "invalid_records"
REPORT_FILE = "report.html"
_LOG = logging.getLogger(__name__)


def output_path(output_dir: str, name: str) -> str:
    return FileSystems.join(output_dir, name)


def _basename(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]


def remove_previous_outputs(output_dir: str) -> List[str]:
    """Deletes the files an earlier run left in ``output_dir``, summary.json first.

    Without this, a rerun that writes fewer shards would leave stale shards
    beside the new ones.
    """
    removed = []
    patterns = [
        SUMMARY_FILE,
        f".{SUMMARY_FILE}.tmp",
        f"{ISSUES_PREFIX}-*",
        f".{ISSUES_PREFIX}-*",
        f"{SCORES_PREFIX}-*",
        f"{INVALID_PREFIX}-*",
        REPORT_FILE,
    ]
    for pattern in patterns:
        for match in FileSystems.match([output_path(output_dir, pattern)])[0].metadata_list:
            FileSystems.delete([match.path])
            removed.append(match.path)
    if removed:
        _LOG.info("removed %d output file(s) of an earlier run in %s", len(removed), output_dir)
    return removed


def _write_summary(
    summary: Dict[str, Any],
    output_dir: str,
    issue_files: Sequence[str],
    score_files: Sequence[str],
    invalid_files: Sequence[str],
    input_description: Optional[str],
    empty_issues: pa.Table,
) -> str:
    summary = dict(summary)
    if not issue_files:  # no valid example reached the ranking: still one file, empty
        issue_files = [_write_issues((0, 1, empty_issues), output_dir)]
    summary["input"] = input_description
    summary["label_issues_files"] = sorted(_basename(f) for f in issue_files)
    summary["label_quality_scores_files"] = sorted(_basename(f) for f in score_files)
    summary["invalid_records_files"] = sorted(_basename(f) for f in invalid_files)
    return _write_then_rename(
        output_dir,
        SUMMARY_FILE,
        "application/json",
        lambda handle: handle.write(json.dumps(summary, indent=2).encode("utf-8")),
    )


def _write_then_rename(output_dir: str, name: str, mime_type: str, write: Callable[[Any], Any]) -> str:
    """Writes ``name`` under a hidden temporary name, then renames it into place.

    A reader never sees a half-written output under its final name.
    """
    final = output_path(output_dir, name)
    temporary = output_path(output_dir, f".{name}.tmp")
    with FileSystems.create(temporary, mime_type=mime_type) as handle:
        write(handle)
    if FileSystems.exists(final):
        FileSystems.delete([final])
    FileSystems.rename([temporary], [final])
    return final


# Rows per Parquet row group when writing the issues.
_ISSUES_ROW_GROUP = 1 << 20


def issues_file_name(range_index: int, num_ranges: int) -> str:
    return f"{ISSUES_PREFIX}-{range_index:05d}-of-{num_ranges:05d}.parquet"


def _write_issues(ranked, output_dir: str) -> str:
    """Writes one score range's ranked issues to its Parquet file, through a temporary name.

    Each range arrives as one table already in rank order, so a plain write beats
    a sharded sink: no shuffle of the table, no extra stages.
    """
    range_index, num_ranges, issues = ranked

    def write(handle):
        with pq.ParquetWriter(handle, issues.schema) as writer:
            writer.write_table(issues, row_group_size=_ISSUES_ROW_GROUP)

    return _write_then_rename(
        output_dir, issues_file_name(range_index, num_ranges), "application/x-parquet", write
    )


def write_outputs(
    result: LabelIssuesResult,
    output_dir: str,
    id_type: pa.DataType = pa.int64(),
    class_names: Optional[Sequence[str]] = None,
    input_description: Optional[str] = None,
    label: str = "WriteOutputs",
) -> beam.PCollection:
    """Writes every output of ``result``; returns a PCollection of summary.json's path.

    ``label`` prefixes the step names, so one pipeline can write several results.
    """
    with_names = class_names is not None
    issue_files = result.issues | f"{label}/WriteLabelIssues" >> beam.Map(_write_issues, output_dir)
    score_files: Any = []
    if result.scores is not None:
        score_files = beam.pvalue.AsList(
            result.scores
            | f"{label}/WriteLabelQualityScores" >> beam.io.WriteToParquetBatched(
                output_path(output_dir, SCORES_PREFIX),
                schema=tables.label_quality_scores_schema(id_type, with_names),
                file_name_suffix=".parquet",
            )
        )
    invalid_files: Any = []
    if result.invalid_records is not None:
        invalid_files = beam.pvalue.AsList(
            result.invalid_records
            | f"{label}/InvalidToJson" >> beam.Map(lambda record: json.dumps(record, sort_keys=True))
            | f"{label}/WriteInvalidRecords" >> beam.io.WriteToText(
                output_path(output_dir, INVALID_PREFIX), file_name_suffix=".jsonl", skip_if_empty=True
            )
        )
    return result.summary | f"{label}/WriteSummary" >> beam.Map(
        _write_summary,
        output_dir,
        beam.pvalue.AsList(issue_files),
        score_files,
        invalid_files,
        input_description,
        tables.label_issues_table(
            IssueCandidates.empty(np.int64 if pa.types.is_integer(id_type) else object), id_type, class_names
        ),
    )
