"""The output directory rule, through the command line on real files, on the local
filesystem and on a non-local Beam filesystem (``testgs://``, tests/input_files.py):

- a run writes into its own staging directory and publishes only when it finished;
- only the files an earlier summary.json of ours lists are ever replaced or deleted,
  by exact name: files of others survive whatever their names, input files in the
  output directory included;
- paths are never globs (``exp[1]`` is not ``exp1``);
- a failed rerun leaves the earlier results exactly as they were;
- a non-empty directory without a run of ours is refused unless --overwrite, and a
  new output never silently replaces a file no manifest of ours lists;
- what killed runs left (staging directories, the files of a publish cut short) is
  removed by the next run, which says so;
- two runs into one directory at once: the second is refused.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow.parquet as pq
import pytest

from cli_runs import (
    FILESYSTEMS,
    LOCK_FILE,
    finish,
    one_error_line,
    path_on,
    reached,
    run_cli,
    small_npy,
    snapshot,
    staging_dirs,
    start_held,
    wait_for,
    with_invalid_label,
)
from datasets import make_dataset, DatasetSpec
from input_files import examples_table

from beam_labelissues.io import outputs
from beam_labelissues import cli

USER_FILES = {  # files of others whose names merely start like ours
    "label_issues-notes.parquet": b"my notes",
    "label_issues-review-2024.csv": b"id,verdict\n1,ok\n",
    ".label_issues-keep": b"keep me",
    "invalid_records-other-tool.jsonl": b'{"from": "another tool"}\n',
    "label_quality_scores-mine.parquet": b"mine",
    "summary.json.bak": b"{}",
}


def _summary(directory) -> dict:
    return json.loads((directory / "summary.json").read_text())


def _run_files(directory) -> set:
    """The names a finished run's summary.json lists, with summary.json itself."""
    summary = outputs.Summary.from_json((directory / "summary.json").read_text())
    return set(summary.files_of_the_run + ["summary.json"])


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    base = tmp_path_factory.mktemp("inputs")
    labels, probs = small_npy(base / "good")
    bad_labels = with_invalid_label(labels, 7, 99)
    np.save(str(base / "bad_labels.npy"), bad_labels)
    return {"labels": labels, "probs": probs, "bad_labels": str(base / "bad_labels.npy")}


def _npy(inputs, labels_key: str = "labels"):
    return ["--labels_file", inputs[labels_key], "--pred_probs_file", inputs["probs"]]


@pytest.mark.parametrize("fs", FILESYSTEMS)
def test_files_that_are_not_ours_survive_and_listed_files_are_replaced(fs, tmp_path, inputs):
    out = tmp_path / "out"
    first = run_cli(*_npy(inputs), "--output", path_on(fs, out), "--write_scores", "--no_report", fs=fs)
    assert first.returncode == 0, first.stderr
    earlier = _run_files(out)
    assert _summary(out)["label_quality_scores_files"]
    for name, content in USER_FILES.items():
        (out / name).write_bytes(content)

    again = run_cli(*_npy(inputs), "--output", path_on(fs, out), fs=fs)
    assert again.returncode == 0, again.stderr
    files = snapshot(out)
    for name, content in USER_FILES.items():
        assert files[name] == content, name
    now = _run_files(out)
    assert "report.html" in now and not _summary(out)["label_quality_scores_files"]
    # The earlier run's scores are gone (its summary.json listed them); nothing else of ours is left.
    assert set(files) == now | set(USER_FILES), sorted(set(files) ^ (now | set(USER_FILES)))
    assert earlier - now == {name for name in earlier if name.startswith("label_quality_scores-")}


@pytest.mark.parametrize("fs", FILESYSTEMS)
def test_input_files_in_the_output_directory_are_read_and_kept(fs, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    labels, probs = make_dataset(DatasetSpec(600, 3, "float32", "int64", noise=0.2, seed=4))
    for name, rows in (("label_issues-part-a.parquet", slice(0, 300)), ("label_issues-part-b.parquet", slice(300, 600))):
        pq.write_table(examples_table(labels[rows], probs[rows]), str(out / name))
    pattern = path_on(fs, out / "label_issues-part-*.parquet")
    before = snapshot(out)

    refused = run_cli("--input", pattern, "--output", path_on(fs, out), "--no_report", fs=fs)
    assert refused.returncode == cli.EXIT_USAGE
    assert "not empty" in one_error_line(refused.stderr) and "--overwrite" in refused.stderr
    assert snapshot(out) == before

    for extra in (["--overwrite"], []):  # the second run finds a run of ours: no --overwrite needed
        result = run_cli("--input", pattern, "--output", path_on(fs, out), "--no_report", *extra, fs=fs)
        assert result.returncode == 0, result.stderr
        assert _summary(out)["num_examples"] == 600
        files = snapshot(out)
        assert {name: files[name] for name in before} == before


@pytest.mark.parametrize("fs", FILESYSTEMS)
def test_glob_characters_in_the_output_path_are_plain_characters(fs, tmp_path, inputs):
    sibling = tmp_path / "exp1"
    sibling.mkdir()
    seeded = run_cli(*_npy(inputs), "--output", str(sibling), "--write_scores", "--no_report")
    assert seeded.returncode == 0, seeded.stderr
    (sibling / "label_issues-x.parquet").write_bytes(b"x")
    sibling_before = snapshot(sibling)
    out = tmp_path / "exp[1]"
    for _ in range(2):
        result = run_cli(*_npy(inputs, "bad_labels"), "--output", path_on(fs, out), "--write_scores",
                         "--on_invalid", "skip", "--no_report", fs=fs)
        assert result.returncode == 0, result.stderr
        assert snapshot(sibling) == sibling_before
    summary = _summary(out)
    assert summary["num_invalid_records"] == 1 and summary["invalid_records_files"]
    # Files: exactly the run's. (On testgs, a directory stand-in for an object store, the
    # emptied staging directory stays: no pattern names a path with "[1]" in it alone.)
    assert set(snapshot(out)) == _run_files(out)
    if fs == "local":
        assert set(os.listdir(out)) == _run_files(out)


@pytest.mark.parametrize("fs", FILESYSTEMS)
def test_a_failed_rerun_leaves_the_earlier_results_as_they_were(fs, tmp_path, inputs):
    out = tmp_path / "out"
    first = run_cli(*_npy(inputs), "--output", path_on(fs, out), "--write_scores", fs=fs)
    assert first.returncode == 0, first.stderr
    before = snapshot(out)
    failed = run_cli(*_npy(inputs, "bad_labels"), "--output", path_on(fs, out), fs=fs)
    assert failed.returncode == cli.EXIT_BAD_INPUT
    assert "invalid record id=7" in one_error_line(failed.stderr)
    assert snapshot(out) == before


@pytest.mark.parametrize("fs", FILESYSTEMS)
def test_a_directory_of_others_is_refused_and_nothing_of_theirs_is_replaced(fs, tmp_path, inputs):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    refused = run_cli(*_npy(inputs), "--output", path_on(fs, out), "--no_report", fs=fs)
    assert refused.returncode == cli.EXIT_USAGE
    assert "holds no earlier run of this tool" in one_error_line(refused.stderr)
    assert snapshot(out) == {"notes.txt": b"mine"}
    forced = run_cli(*_npy(inputs), "--output", path_on(fs, out), "--no_report", "--overwrite", fs=fs)
    assert forced.returncode == 0, forced.stderr
    assert (out / "notes.txt").read_text() == "mine"

    # The earlier run wrote no report; a report.html of someone else's is not replaced.
    (out / "report.html").write_text("<p>my own report</p>")
    before = snapshot(out)
    collided = run_cli(*_npy(inputs), "--output", path_on(fs, out), fs=fs)
    assert collided.returncode == cli.EXIT_USAGE
    assert "would replace report.html, which no earlier run of this tool wrote" in one_error_line(collided.stderr)
    assert snapshot(out) == before


@pytest.mark.parametrize("fs", FILESYSTEMS)
def test_what_unfinished_runs_left_is_removed_by_the_next_run(fs, tmp_path, inputs):
    out = tmp_path / "out"
    first = run_cli(*_npy(inputs), "--output", path_on(fs, out), "--no_report", fs=fs)
    assert first.returncode == 0, first.stderr
    # A run killed while its pipeline ran: its staging directory, Beam's temporary files in it.
    killed = out / ".beam-labelissues-staging-20250101T000000-111-abcdef"
    (killed / "beam-temp-label_quality_scores-1").mkdir(parents=True)
    (killed / "beam-temp-label_quality_scores-1" / "part").write_bytes(b"\0" * (1 << 20))
    # A run killed while publishing: its journal names the files of ours it had moved in.
    cut = out / ".beam-labelissues-staging-20250102T000000-222-fedcba"
    cut.mkdir()
    (cut / "journal.json").write_text(json.dumps({"owned": ["label_issues-00000-of-00003.parquet"]}))
    (out / "label_issues-00000-of-00003.parquet").write_bytes(b"published by the cut-off run")
    # Look-alikes that are not ours stay.
    (out / ".beam-labelissues-staging-notes").mkdir()
    (out / ".beam-labelissues-staging-notes" / "a.txt").write_text("mine")

    result = run_cli(*_npy(inputs), "--output", path_on(fs, out), "--no_report", fs=fs)
    assert result.returncode == 0, result.stderr
    assert "removed .beam-labelissues-staging-20250101T000000-111-abcdef (1.0 MiB) left by an earlier run" \
        in result.stderr
    assert set(os.listdir(out)) == _run_files(out) | {".beam-labelissues-staging-notes"}
    assert (out / ".beam-labelissues-staging-notes" / "a.txt").read_text() == "mine"


@pytest.mark.parametrize("fs", FILESYSTEMS)
def test_two_runs_into_one_directory_at_once(fs, tmp_path, inputs):
    out = tmp_path / "out"
    gate = tmp_path / "gate"
    # The first run holds its reads until the gate opens (tests/held_run.py): it has taken
    # the directory and is in the middle of its pipeline while the second one starts.
    first = start_held(gate, *_npy(inputs), "--output", path_on(fs, out), "--write_scores", "--no_report")
    try:
        wait_for(lambda: reached(gate), what="the first run's pipeline")
        assert (out / LOCK_FILE).exists() and staging_dirs(out)
        second = run_cli(*_npy(inputs), "--output", path_on(fs, out), "--no_report", fs=fs)
        assert second.returncode == cli.EXIT_USAGE, second.stderr
        assert "another run is writing into this output directory" in one_error_line(second.stderr)
        assert first.poll() is None
        gate.touch()
        code, _, err = finish(first)
    finally:
        gate.touch()
    assert code == 0, err
    assert set(os.listdir(out)) == _run_files(out)
    assert _summary(out)["label_quality_scores_files"]
