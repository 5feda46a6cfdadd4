"""Runs the real pipeline (library API, real files) and reads its outputs back."""

from __future__ import annotations

import glob
import json
import os
from typing import Dict, List, Optional

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.options.pipeline_options import PipelineOptions

from beam_labelissues import FindLabelIssues
from beam_labelissues.io import NpyPair, ReadNpyExamples
from beam_labelissues.io import outputs

DEFAULT_BEAM_ARGS = ["--runner=FnApiRunner"]


def read_output_dir(output_dir: str) -> Dict[str, object]:
    """summary.json, the issues table and (if written) the scores table of a run."""
    with open(os.path.join(output_dir, "summary.json"), encoding="utf-8") as handle:
        summary = json.load(handle)
    issue_files = sorted(glob.glob(os.path.join(output_dir, "label_issues-*.parquet")))
    issues = pa.concat_tables([pq.read_table(f) for f in issue_files]).to_pydict()
    score_files = sorted(glob.glob(os.path.join(output_dir, "label_quality_scores-*.parquet")))
    scores = pa.concat_tables([pq.read_table(f) for f in score_files]).to_pydict() if score_files else None
    invalid = []
    for path in sorted(glob.glob(os.path.join(output_dir, "invalid_records-*.jsonl"))):
        with open(path, encoding="utf-8") as handle:
            invalid.extend(json.loads(line) for line in handle if line.strip())
    return {"summary": summary, "issues": issues, "scores": scores, "invalid": invalid,
            "issue_files": issue_files}


def run_on_npy(runs: List[dict], beam_args: Optional[List[str]] = None) -> None:
    """Runs several FindLabelIssues in one pipeline, one per dict of
    labels_path, pred_probs_path, output_dir, batch_size and FindLabelIssues options."""
    with beam.Pipeline(options=PipelineOptions(beam_args or DEFAULT_BEAM_ARGS)) as pipeline:
        for i, run in enumerate(runs):
            run = dict(run)
            pair = NpyPair.open(run.pop("labels_path"), run.pop("pred_probs_path"))
            output_dir = run.pop("output_dir")
            source = ReadNpyExamples(pair, batch_size=run.pop("batch_size", None))
            result = pipeline | f"Find{i}" >> FindLabelIssues(pair.num_classes, source=source, **run)
            outputs.write_outputs(result, output_dir, label=f"Write{i}")
