"""Every failure is one ``error:`` line with the exit code of its kind, never a traceback,
never a hang, never a wrong answer with exit 0. Through the command line in a
subprocess, on real files (and real FIFOs, a real full disk, a real read-only
mount, real signals):

- bad input data (exit 3): .npy headers numpy refuses or whose shape is absurd,
  non-regular files, Parquet with damaged pages or a malformed first row, rows
  that are not probability distributions, duplicate ids among the issues;
- usage errors (exit 2): options out of range, an output path that cannot be a
  directory of outputs, --human_review and --class_names files that cannot be used;
- failures of the run (exit 1): no space left;
- interrupts (128 + the signal): prompt, one line, nothing left running, nothing published.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import struct
import subprocess
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import engines
from cli_runs import (
    LOCK_FILE,
    cli_command,
    finish,
    group_members,
    ignores_sigint,
    kill_group,
    namespace_prefix,
    one_error_line,
    reached,
    run_cli,
    small_npy,
    snapshot,
    staging_dirs,
    start_held,
    wait_for,
)
from datasets import DatasetSpec, make_dataset
from input_files import examples_table

from beam_labelissues import cli, demo

NAMESPACE = namespace_prefix()
needs_namespace = pytest.mark.skipif(NAMESPACE is None, reason="no mount namespace (unshare) on this system")
QUICK_S = 60  # a refusal that takes longer than this counts as a hang


def _raw_npy(path, header: str, data: bytes = b"", version=(1, 0)) -> str:
    """A .npy file with exactly this header text (padded as numpy pads it)."""
    length_format = "<H" if version == (1, 0) else "<I"
    prefix = 6 + 2 + struct.calcsize(length_format)
    text = header.encode("latin1")
    text += b" " * ((64 - (prefix + len(text) + 1) % 64) % 64) + b"\n"
    path.write_bytes(b"\x93NUMPY" + bytes(version) + struct.pack(length_format, len(text)) + text + data)
    return str(path)


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    base = tmp_path_factory.mktemp("good")
    labels, probs = small_npy(base, num_examples=400, num_classes=3)
    return {"labels": labels, "probs": probs, "base": base}


def _refused(args, code, tmp_path, fs_out=None):
    """Runs the command line; checks the exit code, one error line, no output written; returns the line."""
    out = tmp_path / "out" if fs_out is None else fs_out
    started = time.monotonic()
    result = run_cli(*args, "--output", out, "--no_report", timeout=QUICK_S)
    assert result.returncode == code, (args, result.returncode, result.stderr[-3000:])
    assert time.monotonic() - started < QUICK_S
    line = one_error_line(result.stderr)
    if fs_out is None:
        assert not os.path.exists(out), f"{args}: wrote {os.listdir(out)}"
    return line


# --- .npy headers and shapes ------------------------------------------------------------


def test_npy_headers_numpy_refuses_and_absurd_shapes_are_refused_before_allocating(tmp_path, good):
    probs_data = np.full((4, 3), 1 / 3).tobytes()
    cases = {
        "fortran_order is the string 'False'": (
            _raw_npy(tmp_path / "f_str.npy", "{'descr': '<f8', 'fortran_order': 'False', 'shape': (4, 3), }",
                     probs_data), "fortran_order is not a valid bool"),
        "a header longer than numpy reads": (
            _raw_npy(tmp_path / "long.npy", "{'descr': '<f8', 'fortran_order': False, 'shape': (4, 3), }"
                     + " " * 20000, probs_data, version=(2, 0)), "numpy reads at most 10,000"),
        "an extra key": (
            _raw_npy(tmp_path / "extra.npy", "{'descr': '<f8', 'fortran_order': False, 'shape': (4, 3), 'x': 1}",
                     probs_data), "correct keys"),
        "shape product overflows int64": (
            _raw_npy(tmp_path / "overflow.npy",
                     f"{{'descr': '<f4', 'fortran_order': False, 'shape': ({2**62}, {2**62}), }}"),
            "file ends early"),
        "2^64 rows": (
            _raw_npy(tmp_path / "rows.npy", f"{{'descr': '<f4', 'fortran_order': True, 'shape': ({2**64}, 3), }}"),
            "file ends early"),
        "10^12 columns, no rows": (
            _raw_npy(tmp_path / "cols.npy", f"{{'descr': '<f4', 'fortran_order': False, 'shape': (0, {10**12}), }}"),
            "at most 100,000 classes"),
        "a negative dimension": (
            _raw_npy(tmp_path / "neg.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (-4, 3), }"),
            "negative dimension"),
    }
    empty_labels = str(tmp_path / "empty_labels.npy")
    np.save(empty_labels, np.zeros(0, np.int64))
    for name, (path, message) in cases.items():
        if name != "fortran_order is the string 'False'":
            labels = empty_labels if "no rows" in name else good["labels"]
        else:
            labels = str(tmp_path / "four.npy")
            np.save(labels, np.array([0, 1, 2, 1]))
            with pytest.raises(ValueError):  # numpy itself refuses this file
                np.load(path)
        line = _refused(["--labels_file", labels, "--pred_probs_file", path], cli.EXIT_BAD_INPUT, tmp_path)
        assert message in line and path in line, (name, line)

    # A valid 128-byte file of shape (0, 10^8): refused at once, not minutes and gigabytes later.
    valid = str(tmp_path / "wide.npy")
    np.save(valid, np.zeros((0, 10**8), np.float32))
    assert os.path.getsize(valid) == 128
    started = time.monotonic()
    line = _refused(["--labels_file", empty_labels, "--pred_probs_file", valid], cli.EXIT_BAD_INPUT, tmp_path)
    assert "100,000,000 columns" in line and time.monotonic() - started < 30


def test_non_regular_files_are_refused_not_read_forever(tmp_path, good):
    fifo = tmp_path / "pipe.npy"
    os.mkfifo(fifo)
    parquet_fifo = tmp_path / "pipe.parquet"
    os.mkfifo(parquet_fifo)
    cases = [
        (["--labels_file", fifo, "--pred_probs_file", good["probs"]], cli.EXIT_BAD_INPUT, "FIFO"),
        (["--labels_file", good["labels"], "--pred_probs_file", fifo], cli.EXIT_BAD_INPUT, "FIFO"),
        (["--labels_file", good["labels"], "--pred_probs_file", tmp_path], cli.EXIT_BAD_INPUT, "directory"),
        (["--input", parquet_fifo], cli.EXIT_BAD_INPUT, "FIFO"),
        (["--input", tmp_path / "pipe.*"], cli.EXIT_BAD_INPUT, "FIFO"),
        (["--labels_file", good["labels"], "--pred_probs_file", good["probs"], "--class_names", fifo],
         cli.EXIT_USAGE, "FIFO"),
        (["--labels_file", good["labels"], "--pred_probs_file", good["probs"], "--human_review", fifo],
         cli.EXIT_USAGE, "FIFO"),
    ]
    for args, code, message in cases:
        assert message in _refused(args, code, tmp_path), args


# --- Parquet ----------------------------------------------------------------------------


def test_a_malformed_first_row_does_not_decide_the_number_of_classes(tmp_path):
    labels, probs = make_dataset(DatasetSpec(500, 3, "float64", "int64", noise=0.2, seed=9))
    rows = probs.tolist()
    rows[0] = rows[0] + [0.0]  # 4 values where every other row has 3
    path = tmp_path / "first_row_bad.parquet"
    pq.write_table(pa.table({"label": pa.array(labels), "pred_probs": pa.array(rows, pa.list_(pa.float64()))}),
                   str(path))
    skipped = run_cli("--input", path, "--output", tmp_path / "skip", "--on_invalid", "skip", "--no_report")
    assert skipped.returncode == 0, skipped.stderr
    assert "row(s) 0 of this file have another length" in skipped.stderr
    summary = json.loads((tmp_path / "skip" / "summary.json").read_text())
    assert summary["num_classes"] == 3
    assert summary["num_examples"] == 499 and summary["num_invalid_records"] == 1
    invalid = [json.loads(line) for name in summary["invalid_records_files"]
               for line in (tmp_path / "skip" / name).read_text().splitlines()]
    assert invalid == [{"id": 0, "label": int(labels[0]), "pred_probs": rows[0],
                        "reason": "pred_probs has 4 values, expected 3"}]
    line = _refused(["--input", path], cli.EXIT_BAD_INPUT, tmp_path)
    assert "invalid record id=0: pred_probs has 4 values, expected 3" in line


def test_a_parquet_file_with_a_good_footer_and_damaged_pages_is_named(tmp_path):
    labels, probs = make_dataset(DatasetSpec(3000, 3, "float64", "int64", noise=0.2, seed=2))
    for kind in ("list", "fixed"):  # K from the data (read where the run starts) or from the schema (workers)
        path = tmp_path / f"damaged-{kind}.parquet"
        pq.write_table(examples_table(labels, probs, kind), str(path), row_group_size=1000)
        data = bytearray(path.read_bytes())
        data[4:4000] = np.random.default_rng(0).integers(0, 256, 3996, dtype=np.uint8).tobytes()
        path.write_bytes(bytes(data))
        pq.ParquetFile(str(path))  # the footer still reads
        line = _refused(["--input", path], cli.EXIT_BAD_INPUT, tmp_path)
        assert str(path) in line and "cannot read row group 0" in line, line


# --- rows that are not distributions; duplicate ids ---------------------------------------


def test_rows_that_are_not_probability_distributions_are_invalid_records(tmp_path):
    labels = np.array([0, 1, 2, 0, 1, 2], dtype=np.int64)
    probs = np.tile(np.array([[0.8, 0.1, 0.1]]), (6, 1))
    probs[2] = 0.5  # sums to 1.5
    probs[4] = 0.0  # sums to 0
    np.save(str(tmp_path / "labels.npy"), labels)
    np.save(str(tmp_path / "probs.npy"), probs)
    args = ["--labels_file", tmp_path / "labels.npy", "--pred_probs_file", tmp_path / "probs.npy"]
    line = _refused(args, cli.EXIT_BAD_INPUT, tmp_path)
    assert "invalid record id=2: pred_probs sums to 1.5, not 1 within the row-sum tolerance 0.01" in line

    skipped = run_cli(*args, "--output", tmp_path / "skip", "--on_invalid", "skip", "--no_report")
    assert skipped.returncode == 0, skipped.stderr
    summary = json.loads((tmp_path / "skip" / "summary.json").read_text())
    assert summary["num_invalid_records"] == 2 and summary["num_examples"] == 4
    assert summary["row_sum_tolerance"] == 0.01
    reasons = {json.loads(line)["id"]: json.loads(line)["reason"]
               for name in summary["invalid_records_files"]
               for line in (tmp_path / "skip" / name).read_text().splitlines()}
    assert sorted(reasons) == [2, 4] and "sums to 0," in reasons[4]

    unchecked = run_cli(*args, "--output", tmp_path / "off", "--row_sum_tolerance", "inf", "--no_report")
    assert unchecked.returncode == 0, unchecked.stderr
    off = json.loads((tmp_path / "off" / "summary.json").read_text())
    assert off["num_examples"] == 6 and off["row_sum_tolerance"] is None

    # Softmax outputs stored as float16, 1,000 classes: every row passes the default.
    labels16, probs16 = make_dataset(DatasetSpec(2000, 1000, "float16", "int64", noise=0.1, seed=5))
    assert np.abs(probs16.astype(np.float64).sum(axis=1) - 1).max() > 1e-4  # they do not sum to 1 exactly
    np.save(str(tmp_path / "l16.npy"), labels16)
    np.save(str(tmp_path / "p16.npy"), probs16)
    result = run_cli("--labels_file", tmp_path / "l16.npy", "--pred_probs_file", tmp_path / "p16.npy",
                     "--output", tmp_path / "f16", "--no_report")
    assert result.returncode == 0, result.stderr


def test_duplicate_ids_among_the_issues_fail_the_run(tmp_path):
    labels, probs = make_dataset(DatasetSpec(2000, 4, "float32", "int64", noise=0.2, seed=6))
    ids = np.arange(2000, dtype=np.int64) * 10
    predicted = probs.argmax(axis=1)
    disagree = np.flatnonzero(predicted != labels)
    agree = np.flatnonzero(predicted == labels)
    twice = ids.copy()
    twice[disagree[1]] = twice[disagree[0]]  # two examples that can be label issues share an id
    harmless = ids.copy()
    harmless[agree[1]] = harmless[agree[0]]  # two examples the model agrees with share an id
    for name, column in (("twice", twice), ("harmless", harmless)):
        pq.write_table(examples_table(labels, probs, ids=column, id_type=pa.int64()), str(tmp_path / f"{name}.parquet"))
    line = _refused(["--input", tmp_path / "twice.parquet", "--id_column", "example_id"], cli.EXIT_BAD_INPUT,
                    tmp_path)
    assert f"duplicate ids among the examples that can be label issues: {int(twice[disagree[0]])} (2 times)" in line
    # Rows that can never be issues cannot change any output: accepted (see duplicates.py).
    result = run_cli("--input", tmp_path / "harmless.parquet", "--id_column", "example_id",
                     "--output", tmp_path / "harmless", "--no_report")
    assert result.returncode == 0, result.stderr

    # String ids: the same check, whichever worker process sees each id.
    strings = pa.array([f"ex-{i}" for i in twice.tolist()], pa.string())
    pq.write_table(examples_table(labels, probs, ids=strings, id_type=pa.string()), str(tmp_path / "s.parquet"))
    result = run_cli("--input", tmp_path / "s.parquet", "--id_column", "example_id", "--output", tmp_path / "s",
                     "--no_report", "--direct_num_workers", "2", "--direct_running_mode", "multi_processing")
    assert result.returncode == cli.EXIT_BAD_INPUT
    assert f"'ex-{int(twice[disagree[0]])}' (2 times)" in one_error_line(result.stderr)


# --- usage errors ---------------------------------------------------------------------------


def test_options_out_of_range_are_usage_errors(tmp_path, good):
    npy = ["--labels_file", good["labels"], "--pred_probs_file", good["probs"]]
    parquet = tmp_path / "list.parquet"
    pq.write_table(examples_table(np.array([0, 1, 2]), np.full((3, 3), 1 / 3)), str(parquet))
    cases = [
        (["--input", parquet, "--num_classes", str(10**12)], "--num_classes must be at most 100,000"),
        (npy + ["--tolerance", "inf"], "argument --tolerance: expected a non-negative number"),
        (npy + ["--tolerance", "nan"], "argument --tolerance: expected a non-negative number"),
        (npy + ["--row_sum_tolerance", "-1"], "argument --row_sum_tolerance: expected a non-negative number"),
        (npy + ["--batch_size", "0"], "argument --batch_size: expected a whole number, at least 1"),
    ]
    for args, message in cases:
        assert message in _refused(args, cli.EXIT_USAGE, tmp_path), args


def test_output_paths_that_cannot_be_an_output_directory(tmp_path, good):
    npy = ["--labels_file", good["labels"], "--pred_probs_file", good["probs"]]
    a_file = tmp_path / "a_file"
    a_file.write_text("mine")
    dangling = tmp_path / "dangling"
    os.symlink(tmp_path / "nowhere", dangling)
    cases = [
        (a_file, "is a file, not a directory"),
        (a_file / "out", "path through a file"),
        (dangling, "is a symbolic link to"),
        ("", "--output is empty"),
        ("nosuch://bucket/out", "no filesystem handles nosuch:// paths"),
    ]
    for out, message in cases:
        line = _refused(npy, cli.EXIT_USAGE, tmp_path, fs_out=out)
        assert message in line, (out, line)
    assert a_file.read_text() == "mine" and os.path.islink(dangling) and not os.path.exists(tmp_path / "nowhere")
    # A filesystem that does not answer: refused after BEAM_LABELISSUES_REMOTE_TIMEOUT_S, not minutes later.
    started = time.monotonic()
    result = run_cli(*npy, "--output", "gs://beam-labelissues-test-no-such-bucket/out", "--no_report",
                     env={"BEAM_LABELISSUES_REMOTE_TIMEOUT_S": "3"}, timeout=QUICK_S)
    assert result.returncode == cli.EXIT_USAGE, result.stderr[-3000:]
    assert "--output gs://beam-labelissues-test-no-such-bucket/out: cannot" in one_error_line(result.stderr)
    assert time.monotonic() - started < 30


def _in_namespace(mount_script: str, directory, *commands) -> subprocess.CompletedProcess:
    """Runs ``commands`` (each a list) one after the other in a mount namespace where
    ``mount_script`` (sh, with $0 the directory) ran first; stdout/stderr of each
    command go to files beside ``directory``."""
    steps = [mount_script]
    for i, command in enumerate(commands):
        quoted = " ".join("'" + str(part).replace("'", "'\\''") + "'" for part in command)
        steps.append(f"{quoted} > '{directory}.out{i}' 2> '{directory}.err{i}'; echo $? > '{directory}.rc{i}'")
    return subprocess.run(NAMESPACE + ["sh", "-c", " && ".join(steps[:1]) + "; " + "; ".join(steps[1:]),
                                       str(directory)], capture_output=True, text=True, timeout=600)


def _step(directory, i):
    return (int(open(f"{directory}.rc{i}").read()), open(f"{directory}.out{i}").read(),
            open(f"{directory}.err{i}").read())


@needs_namespace
def test_a_read_only_output_directory_is_refused(tmp_path, good):
    directory = tmp_path / "ro"
    directory.mkdir()
    (directory / "kept.txt").write_text("mine")
    npy = ["--labels_file", good["labels"], "--pred_probs_file", good["probs"], "--no_report"]
    read_only = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" "$0"'
    done = _in_namespace(read_only, directory, cli_command() + npy + ["--output", directory, "--overwrite"],
                         cli_command() + npy + ["--output", directory / "new"])
    assert done.returncode == 0, done.stderr
    for i, message in ((0, "cannot write into the output directory: Read-only file system"),
                       (1, "cannot create the directory: Read-only file system")):
        code, _, err = _step(directory, i)
        assert code == cli.EXIT_USAGE, err
        assert message in one_error_line(err), err
    assert snapshot(directory) == {"kept.txt": b"mine"}


def test_human_review_files_that_cannot_be_used_are_refused_before_the_run(tmp_path, good):
    npy = ["--labels_file", good["labels"], "--pred_probs_file", good["probs"]]
    (tmp_path / "bad.json").write_text("[{\"id\": 1,")
    (tmp_path / "numbers.json").write_text("[1, 2, 3]")
    (tmp_path / "no_votes.json").write_text(json.dumps([{"id": 3, "mturk": {"given": 5}}, {"id": 4}]))
    (tmp_path / "object.json").write_text(json.dumps({"id": 1}))
    cases = [
        (tmp_path / "missing.json", "no such file"),
        (tmp_path / "bad.json", "is not valid JSON"),
        (tmp_path / "numbers.json", "entry 0: expected an object with 'id' and 'mturk', got int"),
        (tmp_path / "no_votes.json", "entry 1: 'mturk' must hold the reviewers' votes"),
        (tmp_path / "object.json", "must hold a JSON list"),
    ]
    for path, message in cases:
        line = _refused(npy + ["--human_review", path], cli.EXIT_USAGE, tmp_path)
        assert message in line and str(path) in line, line


# --- failures of the run itself: a full disk ---------------------------------------------------


@needs_namespace
def test_a_full_disk_is_one_line_and_the_earlier_run_stays(tmp_path):
    directory = tmp_path / "small"
    directory.mkdir()
    demo_args = ["--labels_file", demo.DEMO_LABELS, "--pred_probs_file", demo.DEMO_PRED_PROBS, "--quiet"]
    small_disk = 'mount -t tmpfs -o size=64k tmpfs "$0"'
    before, after_scores, after_report = (tmp_path / name for name in ("before", "after_scores", "after_report"))
    done = _in_namespace(
        small_disk, directory,
        cli_command() + demo_args + ["--output", directory, "--no_report"],  # fits
        ["cp", "-a", directory, before],
        cli_command() + demo_args + ["--output", directory, "--no_report", "--write_scores"],  # the scores do not fit
        ["cp", "-a", directory, after_scores],
        cli_command() + demo_args + ["--output", directory],  # report.html does not fit
        ["cp", "-a", directory, after_report],
    )
    assert done.returncode == 0, done.stderr
    code, _, err = _step(directory, 0)
    assert code == 0, err
    for step in (2, 4):
        code, _, err = _step(directory, step)
        assert code == cli.EXIT_RUN_FAILED, err
        line = one_error_line(err)
        assert f"no space left on device writing {directory}" in line, line
        assert "free there; this run's outputs take up to about" in line and "is as it was" in line, line
    assert snapshot(before) == snapshot(after_scores) == snapshot(after_report)
    assert sorted(snapshot(before)) == [
        "class_health-00000-of-00001.parquet", "confident_joint-00000-of-00001.parquet",
        "label_issues-00000-of-00001.parquet", "overlapping_classes-00000-of-00001.parquet", "summary.json",
    ]


# --- interrupts -------------------------------------------------------------------------------

MULTI = ["--direct_num_workers", "2", "--direct_running_mode", "multi_processing"]


def _workers(proc) -> list:
    return [pid for pid, command in group_members(proc.pid).items()
            if "sdk_worker_main" in command and not command.startswith("/bin/sh")]


def _in_the_middle(proc, gate, workers: int) -> None:
    """Waits until the held run (tests/held_run.py) is inside its pipeline: a read waits at the
    gate, and its ``workers`` worker processes have loaded the run's steps (they ignore SIGINT)."""
    wait_for(lambda: reached(gate), what="a read of the run to wait at the gate")
    if workers:
        wait_for(lambda: len(_workers(proc)) >= workers and all(ignores_sigint(pid) for pid in _workers(proc)),
                 what="the worker processes to load the run's steps")


@pytest.mark.parametrize("how, signum, args", [
    ("main process", signal.SIGINT, MULTI),
    ("process group", signal.SIGINT, MULTI),  # Ctrl-C in a terminal
    ("main process", signal.SIGTERM, ["--runner", "FnApiRunner"]),
])
def test_an_interrupt_ends_the_run_at_once_with_one_line(how, signum, args, tmp_path, good):
    npy = ["--labels_file", good["labels"], "--pred_probs_file", good["probs"]]
    out = tmp_path / "out"
    earlier = run_cli(*npy, "--output", out, "--no_report")
    assert earlier.returncode == 0, earlier.stderr
    before = snapshot(out)
    gate = tmp_path / "gate"  # never opened: the run waits in the middle of its pipeline
    proc = start_held(gate, *npy, *args, "--output", out, "--write_scores", "--no_report")
    try:
        _in_the_middle(proc, gate, 2 if args is MULTI else 0)
        assert staging_dirs(out)
        started = time.monotonic()
        os.killpg(proc.pid, signum) if how == "process group" else os.kill(proc.pid, signum)
        code, _, err = finish(proc, timeout=30)
        assert time.monotonic() - started < 10
        assert code == 128 + signum, err[-3000:]
        line = one_error_line(err)
        assert line == f"error: interrupted by {signal.Signals(signum).name}: nothing was published; {out} is as it was"
        wait_for(lambda: not group_members(proc.pid), timeout=5, what="the run's processes to end")
        assert snapshot(out) == before
    finally:
        kill_group(proc.pid)


def test_kill_9_of_the_main_process_takes_its_workers_and_the_next_run_cleans_up(tmp_path, good):
    npy = ["--labels_file", good["labels"], "--pred_probs_file", good["probs"]]
    out = tmp_path / "out"
    gate = tmp_path / "gate"
    proc = start_held(gate, *npy, *MULTI, "--output", out, "--write_scores", "--no_report")
    try:
        _in_the_middle(proc, gate, 2)
        workers = _workers(proc)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        wait_for(lambda: not group_members(proc.pid), timeout=5, what=f"workers {workers} to end")
    finally:
        kill_group(proc.pid)
    left = staging_dirs(out)
    assert len(left) == 1 and not (out / "summary.json").exists()
    assert not [name for name in os.listdir(out / left[0]) if name.startswith("beam-temp-")]
    result = run_cli(*npy, "--output", out, "--no_report")
    assert result.returncode == 0, result.stderr
    assert f"removed {left[0]} (" in result.stderr and "left by an earlier run" in result.stderr
    assert not staging_dirs(out) and not (out / LOCK_FILE).exists()


@pytest.mark.flink
@pytest.mark.skipif(shutil.which("mvn") is None or shutil.which("java") is None,
                    reason="Flink needs mvn and java on PATH")
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "kill-9"])
def test_flink_job_server_goes_with_the_run(signum, tmp_path, good):
    flink = ["--runner", "FlinkRunner", "--flink_master", "[local]", "--flink_version", engines.FLINK_VERSION,
             "--flink_job_server_jar", engines.flink_job_server_jar(), "--parallelism", "2",
             "--environment_type", "LOOPBACK"]
    out = tmp_path / "out"
    gate = tmp_path / "gate"
    proc = start_held(gate, "--labels_file", good["labels"], "--pred_probs_file", good["probs"], *flink,
                      "--output", out, "--no_report")
    try:
        wait_for(lambda: reached(gate), timeout=120, what="the Flink job to read")
        assert any(cmd.startswith("java ") for cmd in group_members(proc.pid).values())
        os.kill(proc.pid, signum)
        code, _, err = finish(proc, timeout=60)
        assert code == (128 + signum if signum != signal.SIGKILL else -signal.SIGKILL), err[-3000:]
        if signum != signal.SIGKILL:
            assert one_error_line(err).startswith("error: interrupted by SIGINT: nothing was published")
        wait_for(lambda: not group_members(proc.pid), timeout=5, what="the JVM to end")
        assert not (out / "summary.json").exists()
    finally:
        kill_group(proc.pid)
