"""The same answer on every engine, and a failure in the middle of a run loses nothing.

Each test runs the command line (python -m beam_labelissues) in a subprocess on
real files with one engine of tests/engines.py and compares its output directory with
a reference run on the in-process FnApiRunner:

- the label_issues Parquet files, concatenated in name order and sorted by rank, as
  Arrow tables (schema included), and byte for byte when the file counts agree;
- summary.json, byte for byte when the inputs are the same files; across input
  formats or file splits only its ``input`` line (which names the files) may differ,
  and the keys naming output shards only when their counts differ.

Datasets: the real MNIST test-set predictions bundled in beam_labelissues/demo_data,
and a generated 200,000 x 10 dataset as .npy and as Parquet split into files in two
different ways (same rows, same order) and shuffled over four files with an id column.
Variants change the batch size, the worker count and Flink's parallelism; one Flink run
gives only ``--runner FlinkRunner`` and lets the CLI add the job server jar it caches. The full method
(``--filter_by prune_by_noise_rate``) and the batched one run on every engine with batch
sizes of 1, 7 and more than N on a small generated dataset, and on MNIST; the dataset's
health files (confident joint, class health, overlapping classes) are compared as well.

Failures: the test-only driver tests/fail_once.py runs the command line with a reader
that fails on its first attempt in the first or the last pass over the data. Flink, with a restart strategy, must finish with the
reference outputs (nothing lost, nothing counted twice); the engines that cannot retry
must fail cleanly: non-zero exit, and an earlier run's outputs in the same folder left
exactly as they were, with nothing beside them.

Datasets and reference runs are built once per test session, shared by the xdist
workers through a lock. Flink tests carry the ``flink`` marker and are skipped only
when Maven or Java is missing; the job server jar is fetched into a cache on first use
(beam_labelissues.flink, the jar ``beam-labelissues flink-job-server`` prints).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from typing import Callable, Dict, List, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import engines
from cli_runs import group_members
from datasets import DatasetSpec, make_dataset, write_npy
from harness import CLI_COMMAND
from input_files import examples_table

from beam_labelissues import demo
from beam_labelissues.io import outputs

FAIL_ONCE_DRIVER = [sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "fail_once.py")]
CLI_TIMEOUT_S = 600
GENERATED = DatasetSpec(200_000, 10, "float32", "int64", noise=0.1, seed=5)
# Small enough for a batch of one row; ties included (rounded probabilities).
SMALL = DatasetSpec(1_500, 5, "float32", "int64", noise=0.2, seed=12, quantize=40)
FILTER_BY = ["--filter_by", "prune_by_noise_rate"]
# Keys of summary.json that name output shard files; their count may differ.
SHARD_KEYS = ("label_issues_files", "label_quality_scores_files", "invalid_records_files")
# The same rows in the same order, split into files differently (one file is empty);
# sorted names give the row order. Each part: (file name, rows, rows per row group).
PARQUET_SPLITS = {
    "parquet3": [("a.parquet", 70_000, 25_000), ("b.parquet", 30_000, 30_000),
                 ("c.parquet", 100_000, 40_000)],
    "parquet5": [("part-0.parquet", 1, 1), ("part-1.parquet", 49_999, 7_000),
                 ("part-2.parquet", 0, 1), ("part-3.parquet", 120_000, 120_000),
                 ("part-4.parquet", 30_000, 9_999)],
}
SHUFFLED_FILES = 4

HAVE_FLINK_TOOLS = shutil.which("mvn") is not None and shutil.which("java") is not None


# --- running the command line --------------------------------------------------------


@dataclasses.dataclass
class CliRun:
    returncode: int
    stdout: str
    stderr: str
    pid: int
    seconds: float
    # Command lines of processes the run started and left running (then killed here).
    left_running: List[str]


def _reap_group(group: int, grace_s: float = 5.0) -> List[str]:
    """Waits up to ``grace_s`` for the processes the CLI started (its process group) to
    end, kills the rest and returns their command lines."""
    deadline = time.monotonic() + grace_s
    while True:
        left = group_members(group)
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    for pid in left:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    return sorted(left.values())


def run_cli(args: Sequence[str], output_dir, command: Sequence[str] = tuple(CLI_COMMAND)) -> CliRun:
    """Runs the CLI in a new session (so its process group holds everything it starts,
    a Flink job server included) and kills what it leaves running."""
    cmd = [*command, *args, "--output", str(output_dir), "--no_report", "--quiet"]
    started = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=str(output_dir.parent), start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=CLI_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        pytest.fail(f"{' '.join(cmd)} ran past {CLI_TIMEOUT_S} s\n{stderr[-5000:]}")
    seconds = time.monotonic() - started
    run = CliRun(proc.returncode, stdout, stderr, proc.pid, seconds, _reap_group(proc.pid))
    print(f"{run.seconds:6.1f} s  exit {run.returncode}  {' '.join(args)}")
    return run


def assert_ok(run: CliRun) -> None:
    assert run.returncode == 0, f"exit {run.returncode}\n{run.stderr[-8000:]}"


def assert_nothing_left_running(run: CliRun) -> None:
    assert not run.left_running, (
        "the CLI exited and left processes it started running (killed now): "
        + "; ".join(cmd[:300] for cmd in run.left_running))


def with_option(args: Sequence[str], name: str, value) -> List[str]:
    """``args`` with ``--name value``, replacing the value when the option is there."""
    args = list(args)
    flag = "--" + name
    if flag in args:
        args[args.index(flag) + 1] = str(value)
    else:
        args += [flag, str(value)]
    return args


# --- data and reference runs, built once per session ---------------------------------


@contextlib.contextmanager
def _locked(path: str):
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _build_once(directory, build: Callable[[object], None]):
    """``build(directory)`` unless an earlier call (any xdist worker) finished it."""
    done = directory / ".done"
    with _locked(str(directory) + ".lock"):
        if not done.exists():
            shutil.rmtree(directory, ignore_errors=True)
            directory.mkdir(parents=True)
            build(directory)
            done.touch()
    return directory


@pytest.fixture(scope="session")
def shared_root(tmp_path_factory):
    """A folder every xdist worker of this session sees at the same path."""
    base = tmp_path_factory.getbasetemp()
    root = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "engines"
    root.mkdir(exist_ok=True)
    return root


def _write_parquet_parts(directory, labels, probs, parts, ids=None):
    os.makedirs(directory, exist_ok=True)
    start = 0
    for name, rows, row_group in parts:
        stop = start + rows
        table = examples_table(labels[start:stop], probs[start:stop],
                               ids=None if ids is None else ids[start:stop], id_type=pa.int64())
        pq.write_table(table, os.path.join(directory, name), row_group_size=row_group)
        start = stop
    assert start == len(labels)


def _build_inputs(directory) -> None:
    write_npy(str(directory / "small"), *make_dataset(SMALL))
    labels, probs = make_dataset(GENERATED)
    write_npy(str(directory / "gen200k"), labels, probs)
    for name, parts in PARQUET_SPLITS.items():
        _write_parquet_parts(str(directory / name), labels, probs, parts)
    # Rows in a random order over files of random sizes; the id column keeps each row's id.
    order = np.random.default_rng(7).permutation(len(labels))
    cuts = np.sort(np.random.default_rng(8).choice(np.arange(1, len(labels)), SHUFFLED_FILES - 1,
                                                    replace=False))
    sizes = np.diff(np.concatenate([[0], cuts, [len(labels)]]))
    parts = [(f"shuffled-{i}.parquet", int(size), 16_384) for i, size in enumerate(sizes)]
    _write_parquet_parts(str(directory / "shuffled"), labels[order], probs[order], parts,
                         ids=order.astype(np.int64))


@dataclasses.dataclass(frozen=True)
class Inputs:
    """CLI input arguments per dataset name, and which reference run each must match."""

    args: Dict[str, List[str]]
    reference_of: Dict[str, str]


@pytest.fixture(scope="session")
def inputs(shared_root) -> Inputs:
    data = _build_once(shared_root / "inputs", _build_inputs)
    npy = data / "gen200k"
    small = data / "small"
    args = {
        "mnist": ["--labels_file", demo.DEMO_LABELS, "--pred_probs_file", demo.DEMO_PRED_PROBS],
        # Quantized probabilities (many exact ties) do not sum to 1: the row-sum rule is off.
        "small": ["--labels_file", str(small / "labels.npy"), "--pred_probs_file", str(small / "pred_probs.npy"),
                  "--row_sum_tolerance", "inf"],
        "gen200k": ["--labels_file", str(npy / "labels.npy"), "--pred_probs_file",
                    str(npy / "pred_probs.npy")],
        "shuffled": ["--input", str(data / "shuffled" / "*.parquet"), "--id_column", "example_id"],
    }
    for name in PARQUET_SPLITS:
        args[name] = ["--input", str(data / name / "*.parquet")]
    reference_of = {name: "gen200k" for name in args}
    reference_of["mnist"] = "mnist"
    reference_of["small"] = "small"
    return Inputs(args, reference_of)


# The reference runs: name -> (dataset, extra CLI args).
REFERENCES = {
    "mnist": ("mnist", []),
    "gen200k": ("gen200k", []),
    "small": ("small", []),
    "mnist-filter_by": ("mnist", FILTER_BY),
    "small-filter_by": ("small", FILTER_BY),
}


@pytest.fixture(scope="session")
def references(shared_root, inputs) -> Dict[str, object]:
    """Output folders of the reference runs: FnApiRunner, default batch size."""
    def build(directory):
        for name, (dataset, extra) in REFERENCES.items():
            out = directory / name
            out.mkdir()
            run = run_cli(inputs.args[dataset] + extra + engines.ENGINES["fnapi"](), out)
            assert_ok(run)
            assert_nothing_left_running(run)

    refs = _build_once(shared_root / "references", build)
    return {name: refs / name for name in REFERENCES}


@pytest.fixture(scope="session")
def flink_args(shared_root) -> List[str]:
    """The Flink engine's args; the first worker to get here fetches the jar."""
    with _locked(str(shared_root / "flink-jar.lock")):
        return engines.ENGINES["flink"]()


# --- comparing output folders ----------------------------------------------------------


HEALTH_FILES = ("confident_joint-00000-of-00001.parquet", "class_health-00000-of-00001.parquet",
                "overlapping_classes-00000-of-00001.parquet")


def read_outputs(output_dir):
    with open(os.path.join(output_dir, "summary.json"), "rb") as handle:
        summary_bytes = handle.read()
    files = sorted(glob.glob(os.path.join(output_dir, "label_issues-*.parquet")))
    assert files, f"no label_issues file in {output_dir}"
    table = pa.concat_tables([pq.read_table(f) for f in files])
    issue_bytes = []
    for path in files:
        with open(path, "rb") as handle:
            issue_bytes.append(handle.read())
    return summary_bytes, table, issue_bytes


def read_health_files(output_dir) -> Dict[str, bytes]:
    found = {}
    for name in HEALTH_FILES:
        with open(os.path.join(output_dir, name), "rb") as handle:
            found[name] = handle.read()
    return found


def assert_same_outputs(output_dir, reference_dir, same_input_files: bool) -> None:
    summary_bytes, table, issue_bytes = read_outputs(output_dir)
    ref_summary_bytes, ref_table, ref_issue_bytes = read_outputs(reference_dir)
    assert table.schema.equals(ref_table.schema, check_metadata=True)
    assert table.num_rows == ref_table.num_rows
    assert table.equals(ref_table), "label_issues differ in name order"
    assert table.sort_by("rank").equals(ref_table.sort_by("rank")), "label_issues differ by rank"
    if len(issue_bytes) == len(ref_issue_bytes):
        assert issue_bytes == ref_issue_bytes, "label_issues files are not byte-identical"

    summary, ref_summary = json.loads(summary_bytes), json.loads(ref_summary_bytes)
    assert summary["num_label_issues"] == table.num_rows
    # The run record (version, settings such as the runner, start and run time) says how
    # each run was made; everything else is byte-identical across engines.
    for key in outputs.RUN_RECORD_FIELDS:
        assert key in summary and key in ref_summary, key
        summary.pop(key)
        ref_summary.pop(key)
    ignored = set() if same_input_files else {"input"}
    ignored |= {key for key in SHARD_KEYS if len(summary.get(key, [])) != len(ref_summary.get(key, []))}
    if not ignored:
        assert json.dumps(summary, indent=2) == json.dumps(ref_summary, indent=2), "summary.json differs"
    for key in ignored:
        summary.pop(key, None)
        ref_summary.pop(key, None)
    assert summary == ref_summary
    # The dataset's health, byte for byte.
    assert read_health_files(output_dir) == read_health_files(reference_dir), "health files differ"
    # A finished run leaves its outputs only: no temporary file or folder.
    names = {os.path.basename(f) for f in glob.glob(os.path.join(output_dir, "label_issues-*.parquet"))}
    extra = sorted(set(os.listdir(output_dir)) - names - {"summary.json"} - set(HEALTH_FILES))
    assert not extra, f"left in the output folder: {extra}"


# --- the same answer everywhere ----------------------------------------------------------

# (engine, dataset, extra args): every run must equal the FnApiRunner reference.
LOCAL_CASES = [
    ("fnapi", "gen200k", ["--batch_size", "4099"]),
    ("fnapi", "parquet3", []),
    ("fnapi", "shuffled", ["--batch_size", "25000"]),
    ("multiprocess", "mnist", []),
    ("multiprocess", "gen200k", ["--batch_size", "3000"]),
    ("multiprocess", "parquet5", ["--batch_size", "10000", "--direct_num_workers", "3"]),
    ("portable", "mnist", []),
    ("portable", "gen200k", ["--batch_size", "50000"]),
    ("portable", "shuffled", []),
]
FLINK_CASES = [
    # As a user starts it: the CLI adds the cached job server jar, --flink_version and LOOPBACK.
    ("flink-defaults", "mnist", []),
    ("flink", "gen200k", []),
    ("flink", "parquet3", ["--parallelism", "3", "--batch_size", "6000"]),
]


def _engine_args(engine: str, extra: Sequence[str], flink_args=None) -> List[str]:
    args = list(flink_args) if engine == "flink" else engines.ENGINES[engine]()
    for i in range(0, len(extra), 2):
        args = with_option(args, extra[i].lstrip("-"), extra[i + 1])
    return args


def _case_id(case) -> str:
    engine, dataset, extra = case
    return "-".join([engine, dataset] + [a.lstrip("-") for a in extra])


def _check_same_answer(tmp_path, inputs, references, dataset, engine_args, method_args=()) -> CliRun:
    out = tmp_path / "out"
    out.mkdir()
    run = run_cli(inputs.args[dataset] + list(method_args) + engine_args, out)
    assert_ok(run)
    reference = inputs.reference_of[dataset]
    suffix = "-filter_by" if method_args else ""
    assert_same_outputs(out, references[reference + suffix], same_input_files=dataset == reference)
    assert_nothing_left_running(run)
    return run


@pytest.mark.parametrize("case", LOCAL_CASES, ids=_case_id)
def test_local_engines_give_the_reference_answer(case, tmp_path, inputs, references):
    engine, dataset, extra = case
    _check_same_answer(tmp_path, inputs, references, dataset, _engine_args(engine, extra))


@pytest.mark.parametrize("case", FLINK_CASES, ids=_case_id)
@pytest.mark.flink
@pytest.mark.skipif(not HAVE_FLINK_TOOLS, reason="Flink needs mvn and java on PATH")
def test_flink_gives_the_reference_answer(case, tmp_path, inputs, references, flink_args):
    engine, dataset, extra = case
    _check_same_answer(tmp_path, inputs, references, dataset, _engine_args(engine, extra, flink_args))


# (engine, dataset, the method's args, extra args): the full method and the batched one on every
# engine, with batch sizes of 1, 7 and more than N.
METHOD_CASES = [
    ("fnapi", "small", FILTER_BY, ["--batch_size", "1"]),
    ("fnapi", "small", [], ["--batch_size", "7"]),
    ("multiprocess", "small", FILTER_BY, ["--batch_size", "7"]),
    ("multiprocess", "small", [], ["--batch_size", "100000"]),
    ("multiprocess", "mnist", FILTER_BY, []),
    ("portable", "small", FILTER_BY, ["--batch_size", "100000"]),
    ("portable", "small", [], ["--batch_size", "1"]),
]
FLINK_METHOD_CASES = [
    ("flink", "mnist", FILTER_BY, []),
    ("flink", "small", FILTER_BY, ["--batch_size", "7"]),
    ("flink", "small", [], ["--batch_size", "100000"]),
]


def _method_case_id(case) -> str:
    engine, dataset, method, extra = case
    return "-".join([engine, dataset, "filter_by" if method else "batched"] + [a.lstrip("-") for a in extra])


@pytest.mark.parametrize("case", METHOD_CASES, ids=_method_case_id)
def test_local_engines_give_the_reference_answer_of_each_method(case, tmp_path, inputs, references):
    engine, dataset, method, extra = case
    _check_same_answer(tmp_path, inputs, references, dataset, _engine_args(engine, extra), method)


@pytest.mark.parametrize("case", FLINK_METHOD_CASES, ids=_method_case_id)
@pytest.mark.flink
@pytest.mark.skipif(not HAVE_FLINK_TOOLS, reason="Flink needs mvn and java on PATH")
def test_flink_gives_the_reference_answer_of_each_method(case, tmp_path, inputs, references, flink_args):
    engine, dataset, method, extra = case
    _check_same_answer(tmp_path, inputs, references, dataset, _engine_args(engine, extra, flink_args), method)


# --- failures in the middle of a run ----------------------------------------------------


def _fail_once(fail_pass: int, marker) -> List[str]:
    """The command of the test-only driver whose read fails once in pass ``fail_pass``."""
    return FAIL_ONCE_DRIVER + [str(fail_pass), str(marker)]


def _marker_pid(marker) -> int:
    return int(marker.read_text())


@pytest.mark.parametrize(
    "fail_pass, dataset, extra",
    [(-1, "parquet5", ["--parallelism", "3", "--batch_size", "7000"]),
     (0, "gen200k", ["--parallelism", "1", "--batch_size", "20000"])],
    ids=["last-pass", "first-pass"],
)
@pytest.mark.flink
@pytest.mark.skipif(not HAVE_FLINK_TOOLS, reason="Flink needs mvn and java on PATH")
def test_flink_retries_a_failed_step_and_loses_nothing(fail_pass, dataset, extra, tmp_path, inputs,
                                                        references, flink_args):
    marker = tmp_path / f"failed-{fail_pass}"
    out = tmp_path / "out"
    out.mkdir()
    # --flink_conf_dir is the Java job server's option; the CLI passes it on.
    restart_args = engines.flink_restart_args(str(tmp_path / "flink-conf"))
    run = run_cli(inputs.args[dataset] + _engine_args("flink", extra, flink_args) + restart_args, out,
                  command=_fail_once(fail_pass, marker))
    assert_ok(run)
    # The step did fail once (in this process: LOOPBACK), and the restarted job finished.
    assert marker.exists(), "the injected failure never happened"
    assert _marker_pid(marker) == run.pid
    # Same counts (none lost, none twice) and the same issues as an undisturbed run.
    assert_same_outputs(out, references["gen200k"], same_input_files=dataset == "gen200k")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_examples"] == GENERATED.num_examples
    assert sum(summary["examples_per_class"]) == GENERATED.num_examples
    assert_nothing_left_running(run)


@pytest.mark.parametrize("fail_pass", [0, -1], ids=["first-pass", "last-pass"])
@pytest.mark.parametrize("engine", ["fnapi", "multiprocess", "portable"])
def test_engines_without_retry_fail_cleanly(engine, fail_pass, tmp_path, inputs, references):
    out = tmp_path / "out"
    shutil.copytree(references["mnist"], out)  # an earlier finished run in the same folder
    marker = tmp_path / f"failed-{fail_pass}"
    run = run_cli(inputs.args["mnist"] + engines.ENGINES[engine](), out, command=_fail_once(fail_pass, marker))
    assert run.returncode != 0
    assert "injected failure in the read of a pass" in run.stderr, run.stderr[-8000:]
    assert_nothing_left_running(run)
    assert marker.exists()
    pid = _marker_pid(marker)
    if engine == "multiprocess":  # the read ran in a worker subprocess
        assert pid != run.pid
    else:  # the worker runs in the launching process
        assert pid == run.pid
    # The earlier run's outputs are exactly as they were, and nothing else is left.
    assert sorted(os.listdir(out)) == sorted(os.listdir(references["mnist"]))
    for name in os.listdir(out):
        assert (out / name).read_bytes() == (references["mnist"] / name).read_bytes(), name
