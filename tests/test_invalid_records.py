"""Invalid records through real pipelines on real files, .npy and Parquet, in both modes.

- ``--on_invalid skip``: the records are left out of every pass (the result equals
  cleanlab on the valid rows alone), listed in invalid_records-*.jsonl with id,
  reason, raw label and probabilities, counted in summary.json and in the Beam
  counter ``invalid_records``; num_examples + num_invalid_records = rows read.
- ``--on_invalid fail``: the run stops with the offending record's id and reason.
- File-level problems fail whatever --on_invalid says; a pickled .npy is refused
  without being unpickled.
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.metrics.metric import MetricsFilter

from datasets import DatasetSpec, make_dataset, write_npy
from harness import read_output_dir, run_pipeline, write_pickle_bomb
from input_files import examples_table
from oracle import assert_matches, cleanlab_expected

from beam_labelissues import cli
from beam_labelissues.io.npy import NpyPair, ReadNpyExamples
from beam_labelissues.io.parquet import ParquetDataset, ReadParquetExamples

SPEC = DatasetSpec(200, 4, "float32", "int32", noise=0.2, seed=11)
TOLERANCE = 1e-4
K = SPEC.num_classes

# Row -> (how to break it, the reason validation gives). Both readers.
VALUE_CASES = {
    5: ("label", K, f"label {K} is not a class in [0, {K})"),
    17: ("label", -1, f"label -1 is not a class in [0, {K})"),
    30: ("prob", (2, np.nan), "pred_probs[2] is nan, not a finite number"),
    41: ("prob", (0, np.inf), "pred_probs[0] is inf, not a finite number"),
    52: ("prob", (3, -np.inf), "pred_probs[3] is -inf, not a finite number"),
    63: ("prob", (1, 1.5), "pred_probs[1] = 1.5 is outside [0, 1] by more than the tolerance"),
    74: ("prob", (1, -0.01), "is outside [0, 1] by more than the tolerance"),
}
# Within the tolerance: valid, used as given.
TOLERATED_ROW = 85
# Parquet rows the reader cannot shape.
SHAPE_CASES = {
    100: ("short", None, f"pred_probs has 3 values, expected {K}"),
    111: ("null_label", None, "label is null"),
    122: ("null_probs", None, "pred_probs is null"),
    133: ("null_value", 2, "pred_probs[2] is null"),
    144: ("long", None, f"pred_probs has 5 values, expected {K}"),
}
COLUMN_NULL_ROW, ID_NULL_ROW = 155, 166


def _dataset():
    labels, probs = make_dataset(SPEC)
    # Values just outside [0, 1] that still sum to 1, as real predictions carry them.
    probs[TOLERATED_ROW] = np.array([1 + TOLERANCE / 2, -TOLERANCE / 2, 0, 0], dtype=np.float32)
    return labels, probs


def _break_values(labels, probs, rows):
    labels, probs = labels.copy(), probs.copy()
    for row in rows:
        kind, value, _ = VALUE_CASES[row]
        if kind == "label":
            labels[row] = value
        else:
            probs[row, value[0]] = value[1]
    return labels, probs


def _parquet_table(labels, probs, shape_rows, ids=None):
    """A list column with the shape cases of ``shape_rows`` applied."""
    label_list = labels.tolist()
    prob_list = probs.tolist()
    for row in shape_rows:
        kind, value, _ = SHAPE_CASES[row]
        if kind == "short":
            prob_list[row] = prob_list[row][:3]
        elif kind == "long":
            prob_list[row] = prob_list[row] + [0.0]
        elif kind == "null_label":
            label_list[row] = None
        elif kind == "null_probs":
            prob_list[row] = None
        elif kind == "null_value":
            prob_list[row][value] = None
    columns = {
        "label": pa.array(label_list, pa.int32()),
        "pred_probs": pa.array(prob_list, pa.list_(pa.float32())),
    }
    if ids is not None:
        columns["key"] = pa.array(ids, pa.string())
    return pa.table(columns)


def _columns_table(labels, probs, null_row=None):
    columns = {"label": pa.array(labels)}
    for j in range(K):
        values = probs[:, j].tolist()
        if null_row is not None and j == 1:
            values[null_row] = None
        columns[f"p_{j}"] = pa.array(values, pa.float32())
    return pa.table(columns)


def _key(row):
    return f"k{row:04d}"


# -- skip ---------------------------------------------------------------------------------------


@pytest.fixture
def skipped(tmp_path):
    labels, probs = _dataset()
    bad_labels, bad_probs = _break_values(labels, probs, VALUE_CASES)
    npy = write_npy(str(tmp_path / "npy"), bad_labels, bad_probs)
    pq.write_table(_parquet_table(bad_labels, bad_probs, SHAPE_CASES), str(tmp_path / "list-a.parquet"),
                   row_group_size=60)
    pq.write_table(_columns_table(labels, probs, COLUMN_NULL_ROW), str(tmp_path / "columns.parquet"))
    ids = [_key(i) for i in range(SPEC.num_examples)]
    ids[ID_NULL_ROW] = None
    pq.write_table(_parquet_table(labels, probs, [], ids), str(tmp_path / "ids.parquet"), row_group_size=50)

    runs = {
        "npy": (ReadNpyExamples(NpyPair.open(*npy), batch_size=32), None, set(VALUE_CASES)),
        "parquet": (ParquetDataset.open(str(tmp_path / "list-*.parquet")), None, set(VALUE_CASES) | set(SHAPE_CASES)),
        "columns": (ParquetDataset.open(str(tmp_path / "columns.parquet"), pred_probs_columns="p_*"), None,
                    {COLUMN_NULL_ROW}),
        "ids": (ParquetDataset.open(str(tmp_path / "ids.parquet"), id_column="key"), None, {ID_NULL_ROW}),
    }
    specs = []
    for name, (source, id_type, _) in runs.items():
        if isinstance(source, ParquetDataset):
            source = ReadParquetExamples(source, batch_size=16)
        specs.append(dict(source=source, num_classes=K, output_dir=str(tmp_path / f"out-{name}"),
                          on_invalid="skip", tolerance=TOLERANCE, with_scores=True))
    result = run_pipeline(specs)
    counters = {}
    for metric in result.metrics().query(MetricsFilter().with_name("invalid_records"))["counters"]:
        run = metric.key.step.split("/")[0]
        counters[run] = counters.get(run, 0) + metric.committed
    return dict(tmp_path=tmp_path, runs=runs, counters=counters, labels=labels, probs=probs)


def test_skipped_records_are_listed_counted_and_left_out_of_every_pass(skipped):
    labels, probs = skipped["labels"], skipped["probs"]
    n = SPEC.num_examples
    for index, (name, (_, _, bad_rows)) in enumerate(skipped["runs"].items()):
        out = read_output_dir(str(skipped["tmp_path"] / f"out-{name}"))
        summary, invalid = out["summary"], out["invalid"]
        key = _key if name == "ids" else (lambda row: row)

        # Listed once each, with the reason and the raw values.
        by_id = {record["id"]: record for record in invalid}
        assert len(by_id) == len(invalid), f"{name}: a record is listed twice"
        expected_ids = {None if (name == "ids" and row == ID_NULL_ROW) else key(row) for row in bad_rows}
        assert set(by_id) == expected_ids, name
        for row in bad_rows:
            record = by_id[None if (name == "ids" and row == ID_NULL_ROW) else key(row)]
            assert set(record) == {"id", "reason", "label", "pred_probs"}
            reason = (VALUE_CASES.get(row) or SHAPE_CASES.get(row) or (None, None, None))[2]
            if reason is not None:
                assert reason in record["reason"], (name, row, record)
            if row in VALUE_CASES and VALUE_CASES[row][0] == "prob":
                column, value = VALUE_CASES[row][1]
                raw = record["pred_probs"][column]
                assert raw == (repr(float(value)) if not np.isfinite(value) else pytest.approx(value)), record
            if row == 111:
                assert record["label"] is None
            if row == 100:
                assert len(record["pred_probs"]) == 3
            if row == 122:
                assert record["pred_probs"] is None
        if name == "columns":
            assert by_id[COLUMN_NULL_ROW]["reason"] == "pred_probs[1] (p_1) is null"
        if name == "ids":
            assert by_id[None]["reason"] == "id is null"

        # Counted: summary, Beam counter, and every row read is either an example or invalid.
        assert summary["num_invalid_records"] == len(bad_rows)
        assert skipped["counters"][f"Find{index}"] == len(bad_rows)
        assert summary["num_examples"] + summary["num_invalid_records"] == n
        assert len(glob.glob(str(skipped["tmp_path"] / f"out-{name}" / "invalid_records-*.jsonl"))) >= 1
        assert summary["invalid_records_files"]

        # Left out of every pass: the answer is cleanlab's on the valid rows alone.
        valid = np.array([i for i in range(n) if i not in bad_rows])
        expected = cleanlab_expected(labels[valid], probs[valid])
        position = {key(int(row)): i for i, row in enumerate(valid)}
        issues = dict(out["issues"])
        issues["id"] = [position[v] for v in issues["id"]]
        scores = dict(out["scores"])
        scores["id"] = [position[v] for v in scores["id"]]
        assert_matches(expected, issues, summary, scores)


# -- fail ---------------------------------------------------------------------------------------


def _fail_case_files(tmp_path, case):
    labels, probs = _dataset()
    fmt, row = case
    if fmt == "npy":
        return ["--labels_file", *(lambda p: [p[0], "--pred_probs_file", p[1]])(
            write_npy(str(tmp_path), *_break_values(labels, probs, [row])))], row
    path = str(tmp_path / "in.parquet")
    if fmt == "parquet" and row in VALUE_CASES:
        pq.write_table(_parquet_table(*_break_values(labels, probs, [row]), []), path, row_group_size=64)
        return ["--input", path], row
    if fmt == "parquet":
        pq.write_table(_parquet_table(labels, probs, [row]), path, row_group_size=64)
        return ["--input", path], row
    if fmt == "columns":
        pq.write_table(_columns_table(labels, probs, COLUMN_NULL_ROW), path)
        return ["--input", path, "--pred_probs_columns", "p_*"], row
    ids = [_key(i) for i in range(SPEC.num_examples)]
    ids[ID_NULL_ROW] = None
    pq.write_table(_parquet_table(labels, probs, [], ids), path)
    return ["--input", path, "--id_column", "key"], "None"


FAIL_CASES = (
    [("npy", row) for row in VALUE_CASES]
    + [("parquet", row) for row in list(VALUE_CASES) + list(SHAPE_CASES)]
    + [("columns", COLUMN_NULL_ROW), ("ids", ID_NULL_ROW)]
)


@pytest.mark.parametrize("case", FAIL_CASES, ids=[f"{f}-row{r}" for f, r in FAIL_CASES])
def test_fail_mode_stops_naming_the_record_and_the_reason(tmp_path, capsys, case):
    args, shown_id = _fail_case_files(tmp_path, case)
    output = str(tmp_path / "out")
    code = cli.main(args + ["--output", output, "--tolerance", str(TOLERANCE), "--no_report", "--quiet"])
    err = capsys.readouterr().err
    assert code == cli.EXIT_BAD_INPUT
    row = case[1]
    reason = (VALUE_CASES.get(row) or SHAPE_CASES.get(row) or (None, None, "null"))[2]
    assert f"invalid record id={shown_id!r}" in err or f"invalid record id={shown_id}" in err, err
    assert reason in err, err
    assert "--on_invalid skip" in err
    assert not os.path.exists(os.path.join(output, "summary.json"))


def test_tolerated_values_are_valid_in_fail_mode(tmp_path, capsys):
    labels, probs = _dataset()
    path = str(tmp_path / "in.parquet")
    pq.write_table(examples_table(labels, probs, "fixed"), path)
    code = cli.main(["--input", path, "--output", str(tmp_path / "out"), "--tolerance", str(TOLERANCE),
                     "--no_report", "--quiet"])
    assert code == 0, capsys.readouterr().err
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["num_examples"] == SPEC.num_examples and summary["num_invalid_records"] == 0


# -- file-level problems: always fail -----------------------------------------------------------


def test_pickled_npy_is_refused_without_unpickling(tmp_path, capsys):
    marker = tmp_path / "unpickled-marker"
    evil = write_pickle_bomb(tmp_path / "evil.npy", marker)
    labels, probs = write_npy(str(tmp_path / "ok"), np.zeros(1, np.int64), np.full((1, 2), 0.5))
    for args in (["--labels_file", evil, "--pred_probs_file", probs],
                 ["--labels_file", labels, "--pred_probs_file", evil]):
        for mode in ("fail", "skip"):
            code = cli.main(args + ["--output", str(tmp_path / "out"), "--on_invalid", mode, "--no_report", "--quiet"])
            err = capsys.readouterr().err
            assert code == cli.EXIT_BAD_INPUT
            assert "refusing to unpickle" in err
            assert not marker.exists(), "the pickle was unpickled"
    # The payload is live: numpy with allow_pickle=True does create the file (in a child process).
    proof = tmp_path / "proof-marker"
    write_pickle_bomb(evil, proof)
    subprocess.run([sys.executable, "-c", f"import numpy; numpy.load({evil!r}, allow_pickle=True)"], check=True)
    assert proof.exists() and not marker.exists()


def test_a_raw_pickle_is_not_a_npy_file(tmp_path, capsys):
    marker = tmp_path / "raw-marker"
    raw = write_pickle_bomb(tmp_path / "raw.npy", marker, as_npy=False)
    _, probs = write_npy(str(tmp_path / "ok"), np.zeros(1, np.int64), np.full((1, 2), 0.5))
    code = cli.main(["--labels_file", str(raw), "--pred_probs_file", probs, "--output", str(tmp_path / "out"),
                     "--no_report", "--quiet"])
    assert code == cli.EXIT_BAD_INPUT and "not a .npy file" in capsys.readouterr().err
    assert not marker.exists()


def test_file_level_problems_fail_even_when_skipping(tmp_path, capsys):
    labels, probs = write_npy(str(tmp_path / "a"), np.zeros(5, np.int64), np.full((5, 3), 1 / 3))
    short_labels, _ = write_npy(str(tmp_path / "b"), np.zeros(4, np.int64), np.full((4, 3), 1 / 3))
    truncated = str(tmp_path / "truncated.npy")
    with open(probs, "rb") as source, open(truncated, "wb") as target:
        target.write(source.read()[:-7])
    garbage = tmp_path / "garbage.npy"
    garbage.write_bytes(b"\x93NUMPY\x01\x00\x10\x00{'descr': '<f8',}\n")
    fortran_ok = write_npy(str(tmp_path / "f"), np.zeros(5, np.int64), np.asfortranarray(np.full((5, 3), 1 / 3)))
    cases = [
        (["--labels_file", short_labels, "--pred_probs_file", probs], "different lengths"),
        (["--labels_file", labels, "--pred_probs_file", truncated], "file ends early"),
        (["--labels_file", labels, "--pred_probs_file", str(garbage)], "malformed .npy header"),
        (["--labels_file", labels, "--pred_probs_file", str(tmp_path / "missing.npy")], "no such file"),
        (["--labels_file", probs, "--pred_probs_file", probs], "labels must be a 1-D array"),
        (["--labels_file", labels, "--pred_probs_file", labels], "pred_probs must be a 2-D array"),
        (["--labels_file", labels, "--pred_probs_file", probs, "--num_classes", "4"], "--num_classes is 4"),
    ]
    for args, message in cases:
        code = cli.main(args + ["--output", str(tmp_path / "out"), "--on_invalid", "skip", "--no_report", "--quiet"])
        err = capsys.readouterr().err
        assert code == cli.EXIT_BAD_INPUT and message in err, (args, err)
    assert not os.path.exists(tmp_path / "out")
    # Fortran order is read correctly, not refused.
    code = cli.main(["--labels_file", fortran_ok[0], "--pred_probs_file", fortran_ok[1], "--output",
                     str(tmp_path / "fortran-out"), "--no_report", "--quiet"])
    assert code == 0
