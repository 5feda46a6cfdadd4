"""The readers end to end: parity with cleanlab through .npy, one Parquet file, a glob
of Parquet files with uneven row groups, id columns (integer and string), one column
per class, and gs://-style paths; the checks made before a pipeline starts; empty input.

One pipeline holds every parity run (Beam's start-up is paid once); the oracle is
cleanlab on the same values (tests/oracle.py).
"""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from datasets import DatasetSpec, make_dataset, write_npy
from harness import read_output_dir, run_pipeline
from input_files import PrefixedLocalFileSystem, examples_table, probs_column
from oracle import assert_matches, cleanlab_expected

from beam_labelissues import cli
from beam_labelissues.io.npy import NpyPair, ReadNpyExamples
from beam_labelissues.io.parquet import (
    ParquetColumns,
    ParquetDataset,
    ReadParquetExamples,
    class_columns,
    record_batch_to_examples,
)
from beam_labelissues.validation import InputFileError


SPEC = DatasetSpec(3000, 12, "float32", "int16", noise=0.15, seed=31)
# Uneven files and row groups; part-b is empty. Sorted names give the row order.
PARTS = [
    dict(name="part-a.parquet", rows=1000, row_group_size=333),
    dict(name="part-b.parquet", rows=0),
    dict(name="part-c.parquet", rows=1500, row_group_size=1000),
    dict(name="part-d.parquet", rows=500, row_group_size=77),
]


def _int_ids(n):
    return 10 * np.arange(n, dtype=np.int64) + 5


def _string_ids(n):
    return [f"ex-{i:06d}" for i in range(n)]


def _write_mixed_parts(directory, labels, probs, ids=None, id_type=None):
    """The PARTS, each file with another list type: list, large_list, fixed_size_list."""
    kinds = ["list", "large", "large", "fixed"]
    start = 0
    os.makedirs(directory, exist_ok=True)
    for part, kind in zip(PARTS, kinds):
        stop = start + part["rows"]
        table = examples_table(
            labels[start:stop], probs[start:stop], kind,
            None if ids is None else ids[start:stop], id_type,
        )
        pq.write_table(table, os.path.join(directory, part["name"]), row_group_size=part.get("row_group_size", 1))
        start = stop
    return os.path.join(directory, "part-*.parquet")


@pytest.fixture
def parity(tmp_path):
    base = tmp_path
    labels, probs = make_dataset(SPEC)
    expected = cleanlab_expected(labels, probs)
    n, k = probs.shape
    npy_labels, npy_probs = write_npy(str(base / "npy"), labels, probs)

    single = str(base / "single" / "examples.parquet")
    os.makedirs(os.path.dirname(single))
    pq.write_table(examples_table(labels, probs, "list"), single)

    glob_plain = _write_mixed_parts(str(base / "plain"), labels, probs)
    glob_int = _write_mixed_parts(str(base / "intid"), labels, probs, _int_ids(n).astype(np.int32), pa.int32())
    glob_str = _write_mixed_parts(str(base / "strid"), labels, probs, _string_ids(n), pa.large_string())

    # One column per class, written in a shuffled order: p_10 must come after p_9.
    wide = str(base / "wide" / "examples.parquet")
    os.makedirs(os.path.dirname(wide))
    order = np.random.default_rng(0).permutation(k)
    columns = {"label": pa.array(labels.astype(np.uint8))}
    columns.update({f"p_{j}": pa.array(probs[:, j]) for j in order})
    pq.write_table(pa.table(columns), wide, row_group_size=700)

    remote_glob = PrefixedLocalFileSystem.remote(glob_plain)
    remote_out = PrefixedLocalFileSystem.remote(str(base / "remote-out"))
    datasets = {
        "npy": (ReadNpyExamples(NpyPair.open(npy_labels, npy_probs), batch_size=256),),
        "single": ParquetDataset.open(single),
        "glob": ParquetDataset.open(glob_plain),
        "glob_int_id": ParquetDataset.open(glob_int, id_column="example_id"),
        "glob_string_id": ParquetDataset.open(glob_str, id_column="example_id"),
        "columns": ParquetDataset.open(wide, pred_probs_columns="p_*"),
        "remote_glob": ParquetDataset.open(remote_glob),
        "remote_npy": (
            ReadNpyExamples(NpyPair.open(*[PrefixedLocalFileSystem.remote(p) for p in (npy_labels, npy_probs)])),
        ),
    }
    runs, out_dirs = [], {}
    for name, dataset in datasets.items():
        if isinstance(dataset, ParquetDataset):
            source = ReadParquetExamples(dataset, batch_size=100 if "glob" in name else None)
        else:
            source = dataset[0]
        output_dir = remote_out if name.startswith("remote") else str(base / f"out-{name}")
        if name == "remote_npy":
            output_dir += "-npy"
        out_dirs[name] = output_dir
        runs.append(dict(source=source, num_classes=k, output_dir=output_dir,
                         with_scores=name in ("glob_string_id", "glob", "remote_glob")))
    run_pipeline(runs)
    return dict(expected=expected, out_dirs=out_dirs, datasets=datasets, n=n, base=base)


def _rows_of(ids, name, n):
    """Maps the ids a run wrote back to row indexes, so the oracle's answer applies."""
    if name == "glob_int_id":
        lookup = {int(v): i for i, v in enumerate(_int_ids(n))}
    elif name == "glob_string_id":
        lookup = {v: i for i, v in enumerate(_string_ids(n))}
    else:
        return list(ids)
    return [lookup[v] for v in ids]


READERS = ["npy", "single", "glob", "glob_int_id", "glob_string_id", "columns", "remote_glob", "remote_npy"]


def test_every_reader_matches_cleanlab(parity):
    """One test for all readers: they share one pipeline, which xdist must not run twice."""
    failures = {}
    for name in READERS:
        output_dir = parity["out_dirs"][name]
        if output_dir.startswith(PrefixedLocalFileSystem.PREFIX):
            output_dir = PrefixedLocalFileSystem.local(output_dir)
        out = read_output_dir(output_dir)
        issues, scores = dict(out["issues"]), out["scores"]
        issues["id"] = _rows_of(issues["id"], name, parity["n"])
        if scores is not None:
            scores = dict(scores)
            scores["id"] = _rows_of(scores["id"], name, parity["n"])
        try:
            assert_matches(parity["expected"], issues, out["summary"], scores)
            assert out["summary"]["num_invalid_records"] == 0
        except AssertionError as error:
            failures[name] = str(error)
    assert not failures, failures
    _check_ids_are_carried_unchanged_with_their_type(parity)
    _check_glob_is_read_in_sorted_name_order_by_row_group(parity)
    assert parity["datasets"]["columns"].columns.pred_probs_columns == tuple(
        f"p_{j}" for j in range(SPEC.num_classes)
    )


def _check_ids_are_carried_unchanged_with_their_type(parity):
    n = parity["n"]
    strings = pq.read_table(os.path.join(parity["out_dirs"]["glob_string_id"], "label_issues-00000-of-00001.parquet"))
    assert strings.schema.field("id").type == pa.string()
    assert set(strings.column("id").to_pylist()) <= set(_string_ids(n))
    ints = pq.read_table(os.path.join(parity["out_dirs"]["glob_int_id"], "label_issues-00000-of-00001.parquet"))
    assert ints.schema.field("id").type == pa.int64()
    assert set(ints.column("id").to_pylist()) <= set(_int_ids(n).tolist())


def _check_glob_is_read_in_sorted_name_order_by_row_group(parity):
    dataset = parity["datasets"]["glob"]
    assert [os.path.basename(f) for f in dataset.files] == [p["name"] for p in PARTS]
    assert dataset.num_rows == parity["n"] and dataset.num_classes == SPEC.num_classes
    firsts = [task.first_row for task in dataset.tasks]
    sizes = [task.num_rows for task in dataset.tasks]
    assert firsts == list(np.cumsum([0] + sizes[:-1]))
    assert sizes == [333, 333, 333, 1] + [1000, 500] + [77] * 6 + [38]
    remote = parity["datasets"]["remote_glob"]
    assert all(f.startswith("testgs://") for f in remote.files)
    assert remote.tasks[3].first_row == dataset.tasks[3].first_row


def test_class_columns_in_numeric_order():
    shuffled = ["p_10", "label"] + [f"p_{j}" for j in (3, 0, 9, 1, 2, 8, 4, 7, 6, 5)]
    assert class_columns("p_*", shuffled) == tuple(f"p_{j}" for j in range(11))
    with pytest.raises(InputFileError, match="consecutive"):
        class_columns("p_*", ["p_0", "p_2"])
    with pytest.raises(InputFileError, match="end with a class number"):
        class_columns("p_*", ["p_0", "p_x"])
    with pytest.raises(InputFileError, match="no column matches"):
        class_columns("q_*", ["p_0", "p_1"])


# -- Conversion of one record batch, without a pipeline ---------------------------------------


def test_conversion_of_sliced_lists_keeps_rows_aligned():
    probs = np.arange(40, dtype=np.float16).reshape(10, 4) / 40
    for kind in ("list", "large", "fixed"):
        batch = pa.record_batch([pa.array(np.arange(10) % 4, pa.uint32()), probs_column(probs, kind)],
                                names=["label", "pred_probs"]).slice(3, 5)
        examples = record_batch_to_examples(batch, ParquetColumns(), 4, first_row=100)
        np.testing.assert_array_equal(examples.ids, np.arange(100, 105))
        np.testing.assert_array_equal(examples.labels, np.arange(3, 8) % 4)
        np.testing.assert_array_equal(examples.pred_probs, probs[3:8])
        assert examples.pred_probs.dtype == np.float16 and not examples.malformed


def test_conversion_sets_aside_rows_it_cannot_shape():
    batch = pa.record_batch(
        [
            pa.array([0, None, 1, 2, 0, 1], pa.int8()),
            pa.array([[0.5, 0.5, 0.0], [0.2, 0.8, 0.0], None, [0.1, 0.9], [0.3, None, 0.7], [0.0, 1.0, 0.0]],
                     pa.list_(pa.float64())),
            pa.array(["a", "b", "c", "d", "e", None]),
        ],
        names=["label", "pred_probs", "key"],
    )
    examples = record_batch_to_examples(batch, ParquetColumns(id="key"), 3, first_row=0)
    assert examples.ids.tolist() == ["a"]
    reasons = {row.id: row.reason for row in examples.malformed}
    assert reasons == {
        "b": "label is null",
        "c": "pred_probs is null",
        "d": "pred_probs has 2 values, expected 3",
        "e": "pred_probs[1] is null",
        None: "id is null",
    }
    assert examples.malformed[2].pred_probs == [0.1, 0.9] and examples.malformed[0].label is None


def test_uint64_ids_beyond_int64_are_set_aside():
    batch = pa.record_batch(
        [pa.array([0, 1]), probs_column(np.eye(2), "list"), pa.array([7, 2**63 + 1], pa.uint64())],
        names=["label", "pred_probs", "id"],
    )
    examples = record_batch_to_examples(batch, ParquetColumns(id="id"), 2, first_row=0)
    assert examples.ids.tolist() == [7]
    assert examples.malformed[0].reason == f"id {2**63 + 1} does not fit in int64"


# -- Checks before the pipeline starts, through the command line -----------------------------


def _main(capsys, *argv):
    code = cli.main(list(argv) + ["--no_report", "--quiet"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    base = tmp_path_factory.mktemp("bad")
    probs = np.full((4, 3), 1 / 3)
    tables = {
        "good": examples_table(np.array([0, 1, 2, 0]), probs),
        "float_label": pa.table({"label": pa.array([0.0, 1.0, 2.0, 0.0]), "pred_probs": probs_column(probs, "list")}),
        "int_probs": pa.table({"label": pa.array([0, 1, 2, 0]),
                               "pred_probs": pa.array([[1, 0, 0]] * 4, pa.list_(pa.int64()))}),
        "string_probs": pa.table({"label": pa.array([0, 1, 2, 0]), "pred_probs": pa.array(["x"] * 4)}),
        "float_id": examples_table(np.array([0, 1, 2, 0]), probs, ids=[0.5] * 4),
        "fixed3": examples_table(np.array([0, 1, 2, 0]), probs, "fixed"),
        "fixed4": examples_table(np.array([0, 1, 2, 0]), np.full((4, 4), 0.25), "fixed"),
    }
    for name, table in tables.items():
        pq.write_table(table, str(base / f"{name}.parquet"))
    (base / "not_parquet.parquet").write_bytes(b"PAR1 this is not a parquet file")
    os.makedirs(base / "mixed_fixed")
    pq.write_table(tables["fixed3"], str(base / "mixed_fixed" / "a.parquet"))
    pq.write_table(tables["fixed4"], str(base / "mixed_fixed" / "b.parquet"))
    return base


@pytest.mark.parametrize(
    "args, message",
    [
        (["--input", "{base}/missing.parquet"], "no files match"),
        (["--input", "{base}/nothing-*.parquet"], "no files match"),
        (["--input", "{base}/good.parquet", "--label_column", "y"], "no label column 'y'; columns: label, pred_probs"),
        (["--input", "{base}/good.parquet", "--pred_probs_column", "p"], "no pred_probs column 'p'"),
        (["--input", "{base}/good.parquet", "--id_column", "key"], "no id column 'key'"),
        (["--input", "{base}/good.parquet", "--pred_probs_columns", "p_*"], "no column matches"),
        (["--input", "{base}/float_label.parquet"], "labels must be integers"),
        (["--input", "{base}/int_probs.parquet"], "int64>; expected a list, large_list or fixed_size_list"),
        (["--input", "{base}/string_probs.parquet"], "has type string; expected a list"),
        (["--input", "{base}/float_id.parquet", "--id_column", "example_id"], "ids must be integers or strings"),
        (["--input", "{base}/not_parquet.parquet"], "cannot read the Parquet footer"),
        (["--input", "{base}/mixed_fixed/*.parquet"], "fixed_size_list sizes differ between files"),
        (["--input", "{base}/fixed3.parquet", "--num_classes", "4"], "--num_classes is 4, but 3 is the fixed_size_list"),
        (["--input", "{base}/good.parquet", "--labels_file", "x.npy"], "not both"),
        (["--input", "{base}/good.parquet", "--pred_probs_column", "p", "--pred_probs_columns", "p_*"], "not both"),
        (["--labels_file", "x.npy", "--pred_probs_file", "y.npy", "--id_column", "id"], "only apply to Parquet"),
        (["--labels_file", "{base}/missing.npy", "--pred_probs_file", "y.npy"], "missing.npy: no such file"),
        (["--input", "{base}/good.parquet", "--num_classes", "1"], "at least 2"),
    ],
)
def test_input_problems_are_reported_before_the_pipeline_starts(capsys, bad_files, args, message):
    args = [a.format(base=bad_files) for a in args]
    code, _, err = _main(capsys, *args, "--output", str(bad_files / "out"), "--on_invalid", "skip")
    # Options that do not go together are usage errors; files the data cannot be read from, bad input.
    usage = message in ("not both", "only apply to Parquet", "at least 2")
    assert code == (cli.EXIT_USAGE if usage else cli.EXIT_BAD_INPUT), err
    assert message in err
    assert not os.path.exists(bad_files / "out"), "nothing may be written before the inputs are checked"


# -- Empty input --------------------------------------------------------------------------------


def test_empty_inputs_write_empty_outputs(capsys, tmp_path, caplog):
    empty_list = examples_table(np.zeros(0, np.int64), np.zeros((0, 3)), ids=[], id_type=pa.string())
    pq.write_table(empty_list, str(tmp_path / "empty_list.parquet"))
    pq.write_table(examples_table(np.zeros(0, np.int64), np.zeros((0, 5)), "fixed"), str(tmp_path / "fixed.parquet"))
    labels, probs = write_npy(str(tmp_path / "npy"), np.zeros(0, np.uint8), np.zeros((0, 4), np.float16))
    cases = [
        (["--input", str(tmp_path / "empty_list.parquet"), "--id_column", "example_id"], 2, pa.string()),
        (["--input", str(tmp_path / "empty_list.parquet"), "--num_classes", "7"], 7, pa.int64()),
        (["--input", str(tmp_path / "fixed.parquet")], 5, pa.int64()),
        (["--labels_file", labels, "--pred_probs_file", probs], 4, pa.int64()),
    ]
    for i, (args, num_classes, id_type) in enumerate(cases):
        caplog.clear()
        output = str(tmp_path / f"out{i}")
        code, out, _ = _main(capsys, *args, "--output", output)
        assert code == 0
        assert any("zero rows" in r.getMessage() and r.levelname == "WARNING" for r in caplog.records)
        with open(os.path.join(output, "summary.json"), encoding="utf-8") as handle:
            summary = json.load(handle)
        assert summary["num_examples"] == 0 and summary["num_label_issues"] == 0
        assert summary["num_classes"] == num_classes and summary["num_invalid_records"] == 0
        table = pq.read_table(os.path.join(output, "label_issues-00000-of-00001.parquet"))
        assert table.num_rows == 0
        assert table.schema.names == ["rank", "id", "given_label", "predicted_label", "label_quality",
                                     "given_label_prob", "predicted_label_prob"]
        assert table.schema.field("id").type == id_type
        assert "no valid examples" in out
