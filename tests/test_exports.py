"""The issues exported for a relabelling round, on output directories the real pipeline writes.

The Label Studio export is checked against Label Studio's documented import format
("Import pre-annotated data", "Import tasks"): a JSON list of tasks, each with a
``data`` object holding the key the labeling config's object tag names in its
``value="$key"``, and ``predictions``: a list of ``{model_version, score, result}``
whose ``result`` items name the ``Choices`` control (``from_name``) and the object
(``to_name``), have ``type: "choices"`` and ``value: {"choices": [one Choice value]}``;
``id`` is reserved at the task's top level. The config is parsed as XML and every
name in the tasks must resolve in it.
"""

from __future__ import annotations

import csv
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from harness import run_pipeline, run_cli
from input_files import examples_table

from beam_labelissues import demo
from beam_labelissues.io import ParquetDataset, ReadParquetExamples, exports, outputs

MNIST_NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def _mnist():
    return np.load(demo.DEMO_LABELS).astype(np.int64), np.load(demo.DEMO_PRED_PROBS)


def _noisy(labels, count, seed=0):
    rng = np.random.default_rng(seed)
    noisy = labels.copy()
    idx = rng.choice(len(labels), count, replace=False)
    noisy[idx] = (noisy[idx] + rng.integers(1, 10, count)) % 10
    return noisy


def _run(tmp_path: Path, name: str, labels, pred_probs, ids, **settings) -> str:
    data = tmp_path / f"{name}-input"
    data.mkdir()
    pq.write_table(examples_table(labels, pred_probs, ids=list(ids), id_type=pa.string()),
                   str(data / "examples.parquet"), row_group_size=2000)
    source = ReadParquetExamples(ParquetDataset.open(str(data / "*.parquet"), id_column="example_id"))
    out = tmp_path / name
    run_pipeline([dict(source=source, num_classes=pred_probs.shape[1], output_dir=str(out), **settings)])
    return str(out)


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    """Noisy MNIST (about 300 issues in two or more files), class names, an image URI template."""
    labels, pred_probs = _mnist()
    tmp = tmp_path_factory.mktemp("exports")
    out = _run(tmp, "images", _noisy(labels, 300), pred_probs, [f"img_{i}" for i in range(len(labels))],
               class_names=MNIST_NAMES, max_issues_per_worker=60,
               example_uri_template="gs://bucket/mnist/{id}.png")
    summary = outputs.read_summary(out)
    assert len(summary.label_issues_files) >= 2
    return out, exports.write_exports(out, summary, ["labelstudio", "csv"])


def _issues(out: str):
    summary = outputs.read_summary(out)
    return outputs.read_label_issues(out, summary).to_pylist()


def _config(out: str):
    root = ET.parse(str(Path(out) / outputs.LABELSTUDIO_CONFIG_FILE)).getroot()
    assert root.tag == "View"
    objects = [e for e in root if e.tag in ("Image", "Text")]
    (obj,) = objects
    (choices,) = root.iter("Choices")
    return root, obj, choices


def _check_tasks_match_config(tasks, root, obj, choices):
    """Every task is importable with the config, as Label Studio documents the format."""
    assert isinstance(tasks, list)
    data_key = obj.get("value")
    assert data_key.startswith("$")
    header_keys = [h.get("value")[1:] for h in root.iter("Header") if h.get("value", "").startswith("$")]
    choice_values = [c.get("value") for c in choices.iter("Choice")]
    assert len(set(choice_values)) == len(choice_values)
    assert choices.get("toName") == obj.get("name") and choices.get("choice") == "single"
    for task in tasks:
        assert set(task) == {"data", "predictions"}  # "id" is reserved at the top level
        assert isinstance(task["data"][data_key[1:]], str) and task["data"][data_key[1:]]
        for key in header_keys:
            assert key in task["data"]
        (prediction,) = task["predictions"]
        assert set(prediction) == {"model_version", "score", "result"}
        assert isinstance(prediction["model_version"], str) and 0 <= prediction["score"] <= 1
        (result,) = prediction["result"]
        assert result["from_name"] == choices.get("name")
        assert result["to_name"] == obj.get("name")
        assert result["type"] == "choices"
        (choice,) = result["value"]["choices"]
        assert choice in choice_values


def test_labelstudio_tasks_follow_the_import_format(image_run):
    out, summary = image_run
    tasks = json.loads((Path(out) / outputs.LABELSTUDIO_EXPORT_FILE).read_text(encoding="utf-8"))
    root, obj, choices = _config(out)
    assert obj.tag == "Image" and obj.get("value") == "$image"
    assert [c.get("value") for c in choices.iter("Choice")] == MNIST_NAMES
    _check_tasks_match_config(tasks, root, obj, choices)
    issues = _issues(out)
    assert len(tasks) == len(issues) == summary.num_label_issues
    for task, issue in zip(tasks, issues):  # in rank order, one task per issue
        data = task["data"]
        assert data["image"] == f"gs://bucket/mnist/{issue['id']}.png" == data["uri"] == issue["uri"]
        assert data["example_id"] == issue["id"] and data["rank"] == issue["rank"]
        assert data["given_label"] == MNIST_NAMES[issue["given_label"]]
        assert data["given_label_index"] == issue["given_label"]
        assert data["predicted_label_index"] == issue["predicted_label"]
        assert (data["label_quality"], data["given_label_prob"], data["predicted_label_prob"]) == (
            issue["label_quality"], issue["given_label_prob"], issue["predicted_label_prob"])  # exact
        prediction = task["predictions"][0]
        assert prediction["result"][0]["value"]["choices"] == [MNIST_NAMES[issue["predicted_label"]]]
        assert prediction["score"] == issue["predicted_label_prob"]
        assert prediction["model_version"].startswith("beam-labelissues ")


def test_csv_holds_the_issues_columns(image_run):
    out, _ = image_run
    with open(Path(out) / outputs.CSV_EXPORT_FILE, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    issues = _issues(out)
    assert list(rows[0]) == list(issues[0])
    assert len(rows) == len(issues)
    for row, issue in zip(rows, issues):
        assert row["id"] == issue["id"] and row["uri"] == issue["uri"]
        assert int(row["rank"]) == issue["rank"] and int(row["given_label"]) == issue["given_label"]
        assert float(row["label_quality"]) == issue["label_quality"]
        assert row["predicted_label_name"] == MNIST_NAMES[issue["predicted_label"]]


def test_exports_are_listed_in_the_summary_and_removed_with_the_run(image_run, tmp_path):
    out, summary = image_run
    assert summary.export_files == sorted(outputs.EXPORT_FILES)
    on_disk = outputs.read_summary(out)
    assert on_disk.export_files == summary.export_files
    assert set(summary.export_files) <= set(on_disk.output_files)
    # Through the command line: the exports are published with the run, and the next run
    # into the same directory (without --export) removes them, as every file the earlier
    # summary.json lists; a user's own file beside them stays.
    rerun = tmp_path / "rerun"
    first = run_cli("--output", rerun, "--export", "labelstudio,csv", "--no_report", "--quiet")
    assert first.returncode == 0, first.stderr
    assert sorted(p.name for p in rerun.iterdir() if p.name in outputs.EXPORT_FILES) == sorted(outputs.EXPORT_FILES)
    (rerun / "my_notes.csv").write_text("the user's own file")
    second = run_cli("--output", rerun, "--no_report", "--quiet")
    assert second.returncode == 0, second.stderr
    assert not [p.name for p in rerun.iterdir() if p.name in outputs.EXPORT_FILES]
    assert outputs.read_summary(str(rerun)).export_files == []
    assert (rerun / "my_notes.csv").read_text() == "the user's own file"


def test_hostile_ids_and_names_survive_both_exports(tmp_path):
    labels, pred_probs = _mnist()
    n = 3000
    ids = [f'id "{i}" \\ tab\there \u00e9\u2028 </script>\x01' for i in range(n)]
    names = ['a "quote"', "b & c", "<d>", "e\\f", "é", "f'g", "h", "i", "j", "k"]
    out = _run(tmp_path, "hostile", labels[:n], pred_probs[:n], ids, class_names=names)
    summary = exports.write_exports(out, outputs.read_summary(out), ["labelstudio", "csv"])
    tasks = json.loads((Path(out) / outputs.LABELSTUDIO_EXPORT_FILE).read_text(encoding="utf-8"))
    root, obj, choices = _config(out)
    assert obj.tag == "Text" and obj.get("value") == "$example"
    assert [c.get("value") for c in choices.iter("Choice")] == names  # XML-escaped, read back as given
    _check_tasks_match_config(tasks, root, obj, choices)
    issues = _issues(out)
    assert summary.num_label_issues == len(tasks) > 0
    for task, issue in zip(tasks, issues):
        assert task["data"]["example"] == issue["id"] == task["data"]["example_id"]
        assert task["data"]["given_label"] == names[issue["given_label"]]
    with open(Path(out) / outputs.CSV_EXPORT_FILE, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["id"] for r in rows] == [i["id"] for i in issues]


def test_no_issues_exports_an_empty_task_list_and_a_header(tmp_path):
    _, pred_probs = _mnist()
    agreeing = pred_probs.argmax(axis=1)
    out = _run(tmp_path, "none", agreeing[:2000], pred_probs[:2000], [str(i) for i in range(2000)])
    summary = exports.write_exports(out, outputs.read_summary(out), ["labelstudio", "csv"])
    assert summary.num_label_issues == 0
    assert json.loads((Path(out) / outputs.LABELSTUDIO_EXPORT_FILE).read_text()) == []
    header = (Path(out) / outputs.CSV_EXPORT_FILE).read_text().splitlines()
    assert header == ['"rank","id","given_label","predicted_label","label_quality","given_label_prob",'
                      '"predicted_label_prob"']
    root, obj, choices = _config(out)
    assert [c.get("value") for c in choices.iter("Choice")] == [str(k) for k in range(10)]


@pytest.mark.parametrize("with_control_character", [False, True])
def test_strings_become_json_literals_column_wise(with_control_character):
    """Both escaping paths: column-wise (the usual case) and row by row (control characters)."""
    values = ['plain', 'a "quote"', "back\\slash", "é ü 漢字", "\u2028 line", "</script>", ""]
    if with_control_character:
        values.append("tab\t and \x01")
    literals = exports._json_strings(pa.array(values)).to_pylist()
    assert [json.loads(v) for v in literals] == values


@pytest.mark.parametrize("values, expected", [
    (None, []), (["csv"], ["csv"]), (["labelstudio,csv"], ["labelstudio", "csv"]),
    (["CSV", "labelstudio", "csv"], ["csv", "labelstudio"]), ([" csv , "], ["csv"]),
])
def test_export_formats(values, expected):
    assert exports.parse_export_formats(values) == expected


def test_unknown_export_format_is_refused():
    with pytest.raises(ValueError, match="unknown format 'coco'"):
        exports.parse_export_formats(["csv,coco"])
