"""Zarr input: the same outputs as the .npy run of the same data, through real pipelines.

Zarr stores (format 2 and 3, sharded or not, chunk sizes that do not divide N,
labels chunked differently from pred_probs) are read by ``zarr_source`` locally
and through a Beam filesystem (``testgs://``, a gs://-style scheme over local
files, see tests/input_files.py); the .npy files of the same data by
``ReadNpyExamples``. Every output file must be identical.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

zarr = pytest.importorskip("zarr")

from beam_labelissues import InputFileError, InvalidRecordError  # noqa: E402
from beam_labelissues.io import NpyPair, ReadNpyExamples  # noqa: E402
from beam_labelissues.io.arrays import plan_reads  # noqa: E402
from beam_labelissues.io.zarr_input import beam_filesystem_store, zarr_source  # noqa: E402
from datasets import DatasetSpec, make_dataset, write_npy  # noqa: E402
from harness import read_output_dir, run_cli, run_pipeline  # noqa: E402
from input_files import PrefixedLocalFileSystem  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _write_zarr(path, data, chunks, zarr_format=3, shards=None):
    zarr.create_array(str(path), data=data, chunks=chunks, shards=shards, zarr_format=zarr_format)
    return str(path)


def _assert_same_outputs(npy_out, zarr_out):
    # "input" names the files read: the rest of the summary is identical.
    assert {**npy_out["summary"], "input": None} == {**zarr_out["summary"], "input": None}
    assert zarr_out["summary"]["input"].endswith(")") and ".zarr" in zarr_out["summary"]["input"]
    assert npy_out["issues"] == zarr_out["issues"]
    assert npy_out["scores"] == zarr_out["scores"]
    assert npy_out["invalid"] == zarr_out["invalid"]


CASES = {
    # name: (spec, labels chunks/format, pred_probs chunks/format/shards, batch_size, options)
    "v3-uneven-chunks": (DatasetSpec(10007, 6, "float32", "int32", 0.15, seed=1),
                         dict(chunks=(1500,), zarr_format=2), dict(chunks=(997, 4)), 300,
                         dict(method="normalized_margin", adjust_pred_probs=True)),
    "v2-one-chunk": (DatasetSpec(5003, 3, "float64", "uint8", 0.3, seed=2),
                     dict(chunks=(5003,), zarr_format=2), dict(chunks=(5003, 3), zarr_format=2), None,
                     dict(estimation_method="off_diagonal_calibrated")),
    "v3-sharded": (DatasetSpec(9001, 10, "float16", "int64", 0.1, seed=3),
                   dict(chunks=(700,)), dict(chunks=(500, 10), shards=(2000, 10)), 1234,
                   dict(method="confidence_weighted_entropy")),
    "remote-v3": (DatasetSpec(4099, 5, "float32", "int16", 0.2, seed=4),
                  dict(chunks=(333,)), dict(chunks=(1024, 5)), 100, {}),
}


def test_zarr_stores_give_the_outputs_of_the_npy_files(tmp_path):
    runs, outputs = [], {}
    for name, (spec, label_layout, probs_layout, batch_size, options) in CASES.items():
        labels, probs = make_dataset(spec)
        directory = tmp_path / name
        labels_path, probs_path = write_npy(str(directory), labels, probs)
        labels_zarr = _write_zarr(directory / "labels.zarr", labels, **label_layout)
        probs_zarr = _write_zarr(directory / "probs.zarr", probs, **probs_layout)
        if name.startswith("remote"):
            labels_zarr = PrefixedLocalFileSystem.remote(labels_zarr)
            probs_zarr = PrefixedLocalFileSystem.remote(probs_zarr)
        assert len(labels) % probs_layout["chunks"][0] != 0 or name == "v2-one-chunk"
        pair = NpyPair.open(labels_path, probs_path)
        for kind, source in (("npy", ReadNpyExamples(pair, batch_size=batch_size)),
                             ("zarr", zarr_source(labels_zarr, probs_zarr, batch_size=batch_size))):
            output_dir = str(directory / f"out-{kind}")
            runs.append(dict(source=source, num_classes=spec.num_classes, output_dir=output_dir,
                             with_scores=True, **options))
            outputs[name, kind] = output_dir
    run_pipeline(runs)
    for name in CASES:
        npy_out, zarr_out = read_output_dir(outputs[name, "npy"]), read_output_dir(outputs[name, "zarr"])
        assert zarr_out["summary"]["num_examples"] == CASES[name][0].num_examples
        _assert_same_outputs(npy_out, zarr_out)


def test_invalid_records_in_zarr_are_the_npy_ones(tmp_path):
    labels, probs = make_dataset(DatasetSpec(3000, 4, "float32", "int64", 0.1, seed=5))
    labels[[10, 2999]] = [7, -1]
    probs[1500, 2] = np.nan
    probs[2000, 0] = 1.5
    labels_path, probs_path = write_npy(str(tmp_path), labels, probs)
    labels_zarr = _write_zarr(tmp_path / "labels.zarr", labels, chunks=(256,))
    probs_zarr = _write_zarr(tmp_path / "probs.zarr", probs, chunks=(999, 4), zarr_format=2)
    run_pipeline([
        dict(source=ReadNpyExamples(NpyPair.open(labels_path, probs_path)), num_classes=4,
             output_dir=str(tmp_path / "npy"), on_invalid="skip"),
        dict(source=zarr_source(labels_zarr, probs_zarr), num_classes=4, output_dir=str(tmp_path / "zarr"),
             on_invalid="skip"),
    ])
    npy_out, zarr_out = read_output_dir(str(tmp_path / "npy")), read_output_dir(str(tmp_path / "zarr"))
    assert sorted(record["id"] for record in zarr_out["invalid"]) == [10, 1500, 2000, 2999]
    npy_out["invalid"].sort(key=lambda record: record["id"])
    zarr_out["invalid"].sort(key=lambda record: record["id"])
    _assert_same_outputs(npy_out, zarr_out)
    with pytest.raises(Exception, match=r"InvalidRecordError|invalid record id="):
        run_pipeline([dict(source=zarr_source(labels_zarr, probs_zarr), num_classes=4,
                          output_dir=str(tmp_path / "fail"))])


def test_find_label_issues_batched_reads_zarr_like_npy(tmp_path):
    from beam_labelissues import find_label_issues_batched

    labels, probs = make_dataset(DatasetSpec(7000, 8, "float32", "int64", 0.2, seed=6))
    labels_zarr = _write_zarr(tmp_path / "labels.zarr", labels, chunks=(1001,), zarr_format=2)
    probs_zarr = _write_zarr(tmp_path / "probs.zarr", probs, chunks=(777, 8))
    expected = find_label_issues_batched(labels, probs, verbose=False)
    remote = find_label_issues_batched(labels_file=PrefixedLocalFileSystem.remote(labels_zarr),
                                       pred_probs_file=PrefixedLocalFileSystem.remote(probs_zarr), verbose=False)
    np.testing.assert_array_equal(remote, expected)
    group = zarr.open_group(str(tmp_path / "group.zarr"), mode="w")
    group.create_array("probs", data=probs, chunks=(2000, 8))
    in_group = find_label_issues_batched(zarr.open_array(labels_zarr, mode="r"),
                                         zarr.open_group(str(tmp_path / "group.zarr"), mode="r")["probs"],
                                         n_jobs=2, verbose=False)
    np.testing.assert_array_equal(in_group, expected)
    in_memory = zarr.create_array(store={}, data=probs, chunks=(3000, 8))  # read by in-process workers only
    np.testing.assert_array_equal(find_label_issues_batched(labels, in_memory, n_jobs=2, verbose=False), expected)
    probs[6543, 5] = np.inf
    bad = _write_zarr(tmp_path / "bad.zarr", probs, chunks=(777, 8))
    with pytest.raises(InvalidRecordError, match=r"id=6543: pred_probs\[5\] is inf"):
        find_label_issues_batched(labels_file=labels_zarr, pred_probs_file=bad, verbose=False)


def test_reads_start_on_chunk_boundaries():
    for num_rows, batch_rows, chunk_rows in [(10007, 300, 997), (9001, 1234, 2000), (100, 7, 1), (5, 100, 3)]:
        block_rows, tasks = plan_reads(num_rows, batch_rows, chunk_rows)
        assert block_rows % chunk_rows == 0 and block_rows >= batch_rows
        assert all(start % chunk_rows == 0 for start, _ in tasks)
        assert [(a, b) for a, b in tasks] == sorted(tasks) and tasks[0][0] == 0 and tasks[-1][1] == num_rows
        assert all(tasks[i][1] == tasks[i + 1][0] for i in range(len(tasks) - 1))


def test_bad_stores_are_input_file_errors(tmp_path):
    labels, probs = make_dataset(DatasetSpec(100, 3, "float32", "int64", 0.1, seed=7))
    good_labels = _write_zarr(tmp_path / "labels.zarr", labels, chunks=(30,))
    good_probs = _write_zarr(tmp_path / "probs.zarr", probs, chunks=(30, 3))
    float_labels = _write_zarr(tmp_path / "float_labels.zarr", labels.astype(np.float32), chunks=(30,))
    short = _write_zarr(tmp_path / "short.zarr", labels[:99], chunks=(30,))
    zarr.open_group(str(tmp_path / "group.zarr"), mode="w")
    cases = [
        ((str(tmp_path / "missing.zarr"), good_probs), "missing.zarr: no such Zarr store"),
        ((str(tmp_path / "group.zarr"), good_probs), "group.zarr: not a readable Zarr array"),
        ((float_labels, good_probs), "float_labels.zarr: labels must have an integer dtype, got float32"),
        ((good_labels, good_labels), "labels.zarr: pred_probs must be a 2-D array"),
        ((short, good_probs), "different lengths: .*short.zarr has 99 rows, .*probs.zarr has 100"),
        ((PrefixedLocalFileSystem.remote(str(tmp_path / "nothing.zarr")), good_probs),
         "nothing.zarr: not a readable Zarr array"),
    ]
    for (labels_path, probs_path), message in cases:
        with pytest.raises(InputFileError, match=message):
            zarr_source(labels_path, probs_path)


def test_beam_filesystem_store_lists_like_a_store(tmp_path):
    group = zarr.open_group(str(tmp_path / "g.zarr"), mode="w")
    group.create_array("a", data=np.arange(10), chunks=(4,))
    group.create_array("b", data=np.ones((3, 2)), chunks=(3, 2))
    remote = zarr.open_group(store=beam_filesystem_store(PrefixedLocalFileSystem.remote(str(tmp_path / "g.zarr"))),
                             mode="r")
    assert sorted(remote.array_keys()) == ["a", "b"]
    np.testing.assert_array_equal(remote["a"][:], np.arange(10))


def test_without_zarr_the_error_names_the_extra(tmp_path):
    script = (
        "import sys; sys.modules['zarr'] = None\n"  # as if zarr were not installed
        "import beam_labelissues\n"
        "from beam_labelissues.io.zarr_input import zarr_source\n"
        "for call in (lambda: zarr_source('l.zarr', 'p.zarr'),\n"
        "             lambda: beam_labelissues.find_label_issues_batched(labels_file='l.zarr',\n"
        "                                                                pred_probs_file='p.zarr')):\n"
        "    try:\n"
        "        call()\n"
        "    except ImportError as error:\n"
        "        print(error)\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([REPO_ROOT, os.environ.get("PYTHONPATH", "")]))
    result = subprocess.run([sys.executable, "-c", script], cwd=str(tmp_path), env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines == ["reading Zarr arrays needs the zarr package: pip install 'beam-labelissues[zarr]'"] * 2


def test_the_command_line_reads_zarr_stores_like_npy_files(tmp_path):
    """--labels_file L.zarr --pred_probs_file P.zarr: the outputs of the .npy run, file for
    file (chunks of 2,999 rows do not divide N; labels chunked apart from pred_probs)."""
    labels, probs = make_dataset(DatasetSpec(20_000, 6, "float32", "int64", 0.15, seed=33))
    npy = write_npy(str(tmp_path / "npy"), labels, probs)
    labels_zarr = _write_zarr(tmp_path / "labels.zarr", labels, chunks=(5_003,), zarr_format=2)
    probs_zarr = _write_zarr(tmp_path / "probs.zarr", probs, chunks=(2_999, 6))
    common = ["--write_scores", "--no_report", "--quiet", "--batch_size", "4000"]
    npy_run = run_cli("--labels_file", npy[0], "--pred_probs_file", npy[1], "--output", tmp_path / "out-npy", *common)
    assert npy_run.returncode == 0, npy_run.stderr
    zarr_run = run_cli("--labels_file", labels_zarr, "--pred_probs_file", probs_zarr, "--output",
                       tmp_path / "out-zarr", *common)
    assert zarr_run.returncode == 0, zarr_run.stderr
    npy_out, zarr_out = read_output_dir(str(tmp_path / "out-npy")), read_output_dir(str(tmp_path / "out-zarr"))
    _assert_same_outputs(npy_out, zarr_out)
    for name in ("confident_joint", "class_health", "overlapping_classes"):
        assert npy_out["summary"][f"{name}_files"] == zarr_out["summary"][f"{name}_files"]
    mixed = run_cli("--labels_file", labels_zarr, "--pred_probs_file", npy[1], "--output", tmp_path / "mixed")
    assert mixed.returncode == 2 and "both .npy files or both Zarr stores" in mixed.stderr
