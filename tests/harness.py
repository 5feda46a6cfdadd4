"""The one way the tests run things: pipelines through the library, the command line
through a subprocess, and outputs read back through ``beam_labelissues.io.outputs``.

No tests live here.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import subprocess
import sys
from typing import Any, Dict, List, Optional

import apache_beam as beam
import numpy as np
from apache_beam.options.pipeline_options import PipelineOptions

from beam_labelissues import FindLabelIssues, NpyPair, ReadNpyExamples, WriteLabelIssues
from beam_labelissues.io import outputs

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_BEAM_ARGS = ["--runner=FnApiRunner"]
# The command line as a user runs it after pip install (python -m beam_labelissues).
CLI_COMMAND = [sys.executable, "-m", "beam_labelissues"]


def run_pipeline(runs: List[Dict[str, Any]], beam_args: Optional[List[str]] = None):
    """Runs several ``FindLabelIssues`` in one pipeline and writes each to its output_dir.

    Each run is a dict with ``output_dir``, and either ``source`` (an ExampleSource)
    or ``labels_path`` + ``pred_probs_path`` (+ ``batch_size``) of a .npy pair;
    any other key is a ``FindLabelIssues`` argument. Returns the PipelineResult.
    """
    pipeline = beam.Pipeline(options=PipelineOptions(beam_args or DEFAULT_BEAM_ARGS))
    for i, run in enumerate(runs):
        run = dict(run)
        output_dir = run.pop("output_dir")
        if "://" not in output_dir:  # a remote-style path (testgs://) is created by the writers
            os.makedirs(output_dir, exist_ok=True)
        source = run.pop("source", None)
        if source is None:
            pair = NpyPair.open(run.pop("labels_path"), run.pop("pred_probs_path"))
            source = ReadNpyExamples(pair, batch_size=run.pop("batch_size", None))
            run.setdefault("num_classes", pair.num_classes)
        num_classes = run.pop("num_classes")
        result = pipeline | f"Find{i}" >> FindLabelIssues(num_classes, source=source, **run)
        result | f"Write{i}" >> WriteLabelIssues(output_dir)
    result = pipeline.run()
    result.wait_until_finish()
    return result


def read_output_dir(output_dir: str) -> Dict[str, Any]:
    """A finished run's outputs: the summary (as a dict), issues, scores and invalid records.

    The summary leaves out the run record (``outputs.RUN_RECORD_FIELDS``: version,
    settings, start and run time), which differs between runs of the same data;
    ``outputs.read_summary`` has it.
    """
    summary = outputs.read_summary(output_dir)
    scores = outputs.read_label_quality_scores(output_dir, summary)
    results = {k: v for k, v in dataclasses.asdict(summary).items() if k not in outputs.RUN_RECORD_FIELDS}
    return {
        "summary": results,
        "issues": outputs.read_label_issues(output_dir, summary).to_pydict(),
        "scores": scores.to_pydict() if scores is not None else None,
        "invalid": outputs.read_invalid_records(output_dir, summary),
        "issue_files": [outputs.output_path(output_dir, name) for name in sorted(summary.label_issues_files)],
    }


def run_cli(*args: str, cwd=None, env: Optional[Dict[str, str]] = None, timeout: float = 300):
    """The command line in a subprocess; returns the CompletedProcess (text output)."""
    environ = dict(os.environ, **(env or {}))
    return subprocess.run(
        CLI_COMMAND + [str(a) for a in args], cwd=cwd, env=environ, capture_output=True, text=True, timeout=timeout
    )


class CreatesFileWhenUnpickled:
    """Unpickling calls ``open(path, 'w')``: the file appears if anyone unpickles it."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def write_pickle_bomb(path, marker, as_npy: bool = True) -> str:
    """A file that creates ``marker`` when unpickled: an object-dtype .npy, or a raw pickle."""
    payload = CreatesFileWhenUnpickled(marker)
    with open(path, "wb") as handle:
        if as_npy:
            array = np.empty(4, dtype=object)
            array[:] = [payload] * 4
            np.lib.format.write_array(handle, array, allow_pickle=True)
        else:
            handle.write(pickle.dumps(payload))
    return str(path)


def combine_whole(fn: beam.CombineFn, inputs) -> Any:
    """``fn`` over ``inputs`` in one accumulator."""
    accumulator = fn.create_accumulator()
    for element in inputs:
        accumulator = fn.add_input(accumulator, element)
    return fn.extract_output(accumulator)


def combine_split(fn: beam.CombineFn, inputs, parts: int) -> Any:
    """``fn`` over bundles of every ``parts``-th input plus an empty bundle, each accumulator
    pickled as a runner ships it, merged from a generator in reverse order."""
    accumulators = []
    for i in range(parts):
        accumulator = fn.create_accumulator()
        for element in inputs[i::parts]:
            accumulator = fn.add_input(accumulator, element)
        accumulators.append(pickle.loads(pickle.dumps(accumulator)))
    accumulators.append(fn.create_accumulator())  # an empty bundle
    merged = fn.merge_accumulators(iter(accumulators[::-1]))
    return fn.extract_output(fn.compact(merged))

