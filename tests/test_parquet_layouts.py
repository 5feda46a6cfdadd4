"""The Parquet layouts data teams already have, written as pandas writes them and read
end to end against cleanlab: one column per class named by class (a ``{class}``
template, an ordered list), labels as class names (a pandas categorical, plain
strings), a folder with hive partitions and Spark's marker files, the same folder
through a gs://-style filesystem, a folder whose name looks like a glob; and the
checks made before a pipeline starts.

One pipeline holds every parity run (Beam's start-up is paid once); the inputs are
opened as the command line opens them (``io.inputs.open_inputs``).
"""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from datasets import DatasetSpec, make_dataset
from harness import read_output_dir, run_pipeline
from input_files import PrefixedLocalFileSystem
from oracle import assert_matches, cleanlab_expected

from beam_labelissues import cli
from beam_labelissues.io import layouts
from beam_labelissues.io.inputs import open_inputs
from beam_labelissues.io.layouts import input_files, label_indices, row_group_warning

SPEC = DatasetSpec(2400, 4, "float32", "int64", noise=0.15, seed=21)
NAMES = ["cat", "dog", "bird", "fish"]
# The folder layout: hive partitions, three files, in sorted-path order.
PARTS = [("split=a/part-00000.parquet", 0, 900), ("split=b/part-00001.parquet", 900, 1500),
         ("split=b/part-00002.parquet", 1500, 2400)]


def _string_id(i):
    return f"img-{i:05d}"


def _write_names(path):
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("\n".join(NAMES) + "\n")
    return str(path)


def _template_frame(labels, probs):
    """One column per class named prob_<class>, in another order; labels as a categorical
    whose categories are sorted by name, not in class order."""
    frame = pd.DataFrame({"id": [_string_id(i) for i in range(len(labels))]})
    frame["label"] = pd.Categorical([NAMES[k] for k in labels], categories=sorted(NAMES))
    for k in (2, 0, 3, 1):
        frame[f"prob_{NAMES[k]}"] = probs[:, k]
    frame["note"] = "unused"
    return frame


def _write_folder(folder, labels, probs):
    """Spark-style output: hive partitions, _SUCCESS, .crc files, a _temporary folder."""
    for name, start, stop in PARTS:
        path = os.path.join(folder, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        frame = pd.DataFrame({"label": labels[start:stop], "pred_probs": list(probs[start:stop])})
        frame.to_parquet(path, row_group_size=250)
        with open(os.path.join(os.path.dirname(path), f".{os.path.basename(name)}.crc"), "wb") as handle:
            handle.write(b"crc, not parquet")
    open(os.path.join(folder, "_SUCCESS"), "wb").close()
    os.makedirs(os.path.join(folder, "_temporary", "0"))
    with open(os.path.join(folder, "_temporary", "0", "part-00009.parquet"), "wb") as handle:
        handle.write(b"an unfinished task's file, not parquet")
    return folder


@pytest.fixture(scope="module")
def parity(tmp_path_factory):
    base = tmp_path_factory.mktemp("layouts")
    labels, probs = make_dataset(SPEC)
    n = len(labels)
    names_file = _write_names(base / "classes.txt")

    template = str(base / "template.parquet")
    _template_frame(labels, probs).to_parquet(template, row_group_size=700)

    listed = str(base / "listed.parquet")
    frame = pd.DataFrame({"example": 1000 + np.arange(n), "given": [NAMES[k] for k in labels]})
    for column, k in (("omega", 3), ("alpha", 1), ("zeta", 0), ("mid", 2)):
        frame[column] = probs[:, k]
    frame.to_parquet(listed, row_group_size=1000)

    folder = _write_folder(str(base / "spark_output"), labels, probs)
    # A folder named like a glob, beside a file the glob would match.
    glob_named = str(base / "run[1]")
    os.makedirs(glob_named)
    pd.DataFrame({"label": labels, "pred_probs": list(probs)}).to_parquet(os.path.join(glob_named, "data.parquet"))
    with open(str(base / "run1"), "wb") as handle:
        handle.write(b"not the input")

    # Labels as a categorical with a name that is no class and a null, read with on_invalid=skip.
    unknown = str(base / "unknown.parquet")
    frame = pd.DataFrame({"label": pd.Categorical(["cat", "cow", None, "dog", "fish", "bird"], categories=NAMES + ["cow"]),
                          "pred_probs": [np.array([0.7, 0.1, 0.1, 0.1])] * 6})
    frame.to_parquet(unknown)

    opened = {
        "template": open_inputs(parquet=template, pred_probs_columns="prob_{class}", id_column="id",
                                class_names_file=names_file),
        "listed": open_inputs(parquet=listed, pred_probs_columns="zeta, alpha, mid,omega", label_column="given",
                              id_column="example", class_names_file=names_file, batch_size=300),
        "folder": open_inputs(parquet=folder, batch_size=128),
        "remote_folder": open_inputs(parquet=PrefixedLocalFileSystem.remote(folder + "/")),
        "glob_named_folder": open_inputs(parquet=glob_named),
        "unknown": open_inputs(parquet=unknown, class_names_file=names_file),
    }
    runs = []
    for name, inputs in opened.items():
        runs.append(dict(source=inputs.source, num_classes=inputs.num_classes, class_names=inputs.class_names,
                         output_dir=str(base / f"out-{name}"), with_scores=name != "unknown",
                         on_invalid="skip" if name == "unknown" else "fail"))
    run_pipeline(runs)
    return dict(expected=cleanlab_expected(labels, probs), base=base, opened=opened, n=n, folder=folder,
                names_file=names_file, template=template)


def _rows_of(ids, name):
    if name == "template":
        return [int(v.split("-")[1]) for v in ids]
    if name == "listed":
        return [v - 1000 for v in ids]
    return list(ids)


def test_every_layout_matches_cleanlab(parity):
    """One test for all layouts: they share one pipeline, which xdist must not run twice."""
    failures = {}
    for name in ("template", "listed", "folder", "remote_folder", "glob_named_folder"):
        out = read_output_dir(str(parity["base"] / f"out-{name}"))
        issues, scores = dict(out["issues"]), dict(out["scores"])
        issues["id"], scores["id"] = _rows_of(issues["id"], name), _rows_of(scores["id"], name)
        try:
            assert_matches(parity["expected"], issues, out["summary"], scores)
            assert out["summary"]["num_invalid_records"] == 0
        except AssertionError as error:
            failures[name] = str(error)
    assert not failures, failures
    opened = parity["opened"]
    assert opened["template"].source._dataset.columns.pred_probs_columns == tuple(f"prob_{k}" for k in NAMES)
    assert opened["listed"].source._dataset.columns.pred_probs_columns == ("zeta", "alpha", "mid", "omega")
    assert opened["template"].id_type == pa.string() and opened["listed"].id_type == pa.int64()
    template_issues = read_output_dir(str(parity["base"] / "out-template"))["issues"]
    assert template_issues["given_label_name"] == [NAMES[k] for k in template_issues["given_label"]]


def test_a_folder_is_read_with_pyarrows_rules(parity):
    folder = parity["folder"]
    expected = [os.path.join(folder, name) for name, _, _ in PARTS]
    assert list(parity["opened"]["folder"].source._dataset.files) == expected
    remote = parity["opened"]["remote_folder"].source._dataset.files
    assert list(remote) == [PrefixedLocalFileSystem.remote(path) for path in expected]
    # pyarrow's own discovery of the same folder finds the same files.
    import pyarrow.dataset as ds

    assert sorted(ds.dataset(folder, format="parquet").files) == expected
    glob_named = parity["opened"]["glob_named_folder"].source._dataset.files
    assert [os.path.basename(path) for path in glob_named] == ["data.parquet"]
    # A glob still reads as a glob; a file as itself.
    assert input_files(os.path.join(folder, "split=b", "*.parquet")) == expected[1:]
    assert input_files(expected[0]) == expected[:1]


def test_label_names_that_are_not_classes_are_invalid_records(parity):
    out = read_output_dir(str(parity["base"] / "out-unknown"))
    reasons = [(record["label"], record["reason"]) for record in out["invalid"]]
    assert reasons == [("cow", "label 'cow' is not one of the class names"), (None, "label is null")]
    assert out["summary"]["num_examples"] == 4 and out["summary"]["examples_per_class"] == [1, 1, 1, 1]


def test_label_names_map_by_name_in_every_arrow_type():
    names = ["cat", "dog", "bird"]
    values = ["bird", None, "cat", "cow", "dog"]
    for array in (pa.array(values), pa.array(values, pa.large_string()), pa.array(values).dictionary_encode()):
        indices, unknown = label_indices(array, names)
        assert indices.to_pylist() == [2, None, 0, None, 1]
        assert unknown.tolist() == [False, False, False, True, False]
    ints = pa.array([2, 0, 1], pa.int8()).dictionary_encode()
    assert label_indices(ints, None)[0].to_pylist() == [2, 0, 1]


# -- The command line --------------------------------------------------------------------------


def _main(capsys, *argv):
    code = cli.main(list(argv) + ["--no_report", "--quiet"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_the_command_line_reads_a_class_named_layout(capsys, parity, tmp_path):
    output = str(tmp_path / "out")
    code, out, err = _main(capsys, "--input", parity["template"], "--pred_probs_columns", "prob_{class}",
                           "--class_names", parity["names_file"], "--id_column", "id", "--output", output)
    assert code == 0, err
    with open(os.path.join(output, "summary.json"), encoding="utf-8") as handle:
        summary = json.load(handle)
    assert summary["num_label_issues"] == len(parity["expected"].issue_ids)
    assert summary["class_names"] == NAMES
    top = pq.read_table(os.path.join(output, "label_issues-00000-of-00001.parquet")).slice(0, 1).to_pylist()[0]
    assert top["id"] in out and f"{top['given_label_name']} ({top['given_label']})" in out
    help_text = cli.build_arg_parser().format_help()
    for promise in ("'prob_{class}'", "comma-separated", "hive key=value", "never read as a glob",
                    "as pandas writes a categorical"):
        assert promise in " ".join(help_text.split()), promise


@pytest.fixture(scope="module")
def bad_layouts(tmp_path_factory):
    base = tmp_path_factory.mktemp("bad_layouts")
    probs = np.full((4, 3), 1 / 3)
    frame = pd.DataFrame({"label": ["cat", "dog", "bird", "cat"], "p_cat": probs[:, 0], "p_dog": probs[:, 1],
                          "p_bird": probs[:, 2]})
    frame.to_parquet(base / "names.parquet")
    pd.DataFrame({"label": [0.5, 1.0], "pred_probs": [[0.5, 0.5]] * 2}).to_parquet(base / "floats.parquet")
    os.makedirs(base / "only_markers" / "_logs")
    open(base / "only_markers" / "_SUCCESS", "wb").close()
    open(base / "only_markers" / "_logs" / "a.parquet", "wb").close()
    (base / "two.txt").write_text("cat\ndog\n")
    _write_names(base / "classes.txt")
    (base / "three.txt").write_text("cat\ndog\nbird\n")
    return base


@pytest.mark.parametrize(
    "args, message",
    [
        (["--input", "{base}/names.parquet", "--pred_probs_columns", "p_cat,p_dog,p_bird"],
         "label column 'label' has type large_string; it holds class names: give --class_names"),
        (["--input", "{base}/names.parquet", "--pred_probs_columns", "p_{class}"],
         "names one column per class by its name: give --class_names"),
        (["--input", "{base}/names.parquet", "--pred_probs_columns", "p_cat,p_dog,p_cow",
          "--class_names", "{base}/three.txt"], "no column 'p_cow'; columns: label, p_cat, p_dog, p_bird"),
        (["--input", "{base}/names.parquet", "--pred_probs_columns", "p_cat,p_dog,p_cat",
          "--class_names", "{base}/three.txt"], "names p_cat more than once"),
        (["--input", "{base}/names.parquet", "--pred_probs_columns", "p_{class}",
          "--class_names", "{base}/classes.txt"], "no column 'p_fish'"),
        (["--input", "{base}/names.parquet", "--pred_probs_columns", "p_cat,p_dog,p_bird",
          "--class_names", "{base}/two.txt"], "names 2 classes, but the data has 3"),
        (["--input", "{base}/floats.parquet"], "labels must be integers (class indices 0..K-1), or class names"),
        (["--input", "{base}/only_markers"], "the folder holds no data files, only files ignored"),
        (["--input", "{base}/no_such_folder"], "no files match"),
    ],
)
def test_layout_problems_are_reported_before_the_pipeline_starts(capsys, bad_layouts, args, message):
    args = [a.replace("{base}", str(bad_layouts)) for a in args]
    code, _, err = _main(capsys, *args, "--output", str(bad_layouts / "out"))
    # Options that do not fit together or a class-names file that does not fit the data are
    # usage errors (2); a layout the data does not have is bad input (3).
    usage = ("names 2 classes", "by its name: give --class_names")
    assert code == (2 if any(part in message for part in usage) else 3), err
    assert message in err
    assert not os.path.exists(bad_layouts / "out"), "nothing may be written before the inputs are checked"


# -- Parallelism --------------------------------------------------------------------------------


def test_a_warning_when_large_row_groups_cap_the_parallelism(tmp_path, caplog, monkeypatch):
    labels, probs = make_dataset(DatasetSpec(3000, 4, "float64", "int64", seed=2))
    pd.DataFrame({"label": labels, "pred_probs": list(probs)}).to_parquet(tmp_path / "one_group.parquet")
    os.makedirs(tmp_path / "many")
    pd.DataFrame({"label": labels, "pred_probs": list(probs)}).to_parquet(tmp_path / "many" / "a.parquet",
                                                                            row_group_size=200)
    one = open_inputs(parquet=str(tmp_path / "one_group.parquet"))
    groups = [task.num_rows for task in one.source._dataset.tasks]
    assert groups == [3000]
    message = row_group_warning(groups, 1, 4, 8, large_bytes=64 << 10)
    assert message.startswith("each of the 1 file(s) is one row group, the largest 3,000 rows")
    assert "at most 1 worker(s) read at once" in message and "row_group_size=" in message
    assert row_group_warning(groups, 1, 4, 8) is None, "94 KiB is no reason to warn"
    assert row_group_warning([200] * 15, 1, 4, 8, large_bytes=64 << 10) is None
    # Through open_inputs, with the threshold lowered to this data's size.
    monkeypatch.setattr(layouts, "LARGE_ROW_GROUP_BYTES", 64 << 10)
    caplog.clear()
    open_inputs(parquet=str(tmp_path / "one_group.parquet"))
    assert any("is one row group" in r.getMessage() and r.levelname == "WARNING" for r in caplog.records)
    caplog.clear()
    open_inputs(parquet=str(tmp_path / "many"))
    assert not any("row group" in r.getMessage() for r in caplog.records)
