"""The command line end to end, through a subprocess: the demo default and every bad input."""

from __future__ import annotations

import glob
import json
import os

import numpy as np
import pyarrow.parquet as pq
import pytest
from cleanlab.experimental.label_issues_batched import find_label_issues_batched

from harness import run_cli, write_pickle_bomb

from beam_labelissues import cli, demo
from beam_labelissues.io.human_review import load_human_review, review_of_issues


def test_demo_runs_with_no_arguments(tmp_path):
    result = run_cli("--runner=FnApiRunner", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out_dir = tmp_path / "label_issues_output"
    summary = json.loads((out_dir / "summary.json").read_text())
    labels, probs = np.load(demo.DEMO_LABELS), np.load(demo.DEMO_PRED_PROBS)
    expected = find_label_issues_batched(labels, probs, verbose=False)
    table = pq.read_table(glob.glob(str(out_dir / "label_issues-*.parquet"))[0]).to_pydict()
    assert sorted(table["id"]) == sorted(expected.tolist())
    assert summary["num_examples"] == 10000 and summary["num_label_issues"] == len(expected)
    text = result.stdout
    assert "Examples read:        10,000" in text
    assert "Confident thresholds:" in text
    assert f"Label issues found:   {len(expected)}" in text
    first = min(zip(table["rank"], table["id"]))[1]
    assert f"{first}" in text.split("Most severe issues:")[1]
    review = review_of_issues(table["id"], load_human_review(demo.DEMO_HUMAN_REVIEW))
    assert f"did not uphold the given label for {review['not_upheld']} of them" in text
    assert (out_dir / "report.html").exists()


def test_help_explains_every_option():
    result = run_cli("--help")
    assert result.returncode == 0
    for option in ["--labels_file", "--pred_probs_file", "--method", "--adjust_pred_probs", "--estimation_method",
                   "--batch_size", "--output", "--write_scores", "--tolerance", "--on_invalid", "--class_names",
                   "--runner", "self_confidence", "off_diagonal_calibrated"]:
        assert option in result.stdout


def _save(path, array, **kwargs):
    np.save(path, array, **kwargs)
    return str(path)


def _bad_inputs(tmp_path):
    good_labels = _save(tmp_path / "labels.npy", np.array([0, 1, 2, 1], dtype=np.int64))
    probs = np.full((4, 3), 1 / 3)
    good_probs = _save(tmp_path / "probs.npy", probs)
    out_of_range = probs.copy()
    out_of_range[2, 1] = 1.01
    nan = probs.copy()
    nan[3, 0] = np.nan
    marker = tmp_path / "pwned.txt"
    evil_path = write_pickle_bomb(tmp_path / "evil.npy", marker)
    return marker, {
        "missing file": ([str(tmp_path / "nope.npy"), good_probs], "no such file"),
        "different lengths": ([_save(tmp_path / "l5.npy", np.arange(5) % 3), good_probs], "different lengths"),
        "label outside [0, K)": ([_save(tmp_path / "l_bad.npy", np.array([0, 1, 3, 1])), good_probs],
                                 "invalid record id=2: label 3 is not a class in [0, 3)"),
        "negative label": ([_save(tmp_path / "l_neg.npy", np.array([0, -1, 2, 1], dtype=np.int8)), good_probs],
                           "invalid record id=1: label -1"),
        "probability out of tolerance": ([good_labels, _save(tmp_path / "p_oor.npy", out_of_range)],
                                         "invalid record id=2: pred_probs[1] = 1.01 is outside [0, 1]"),
        "nan probability": ([good_labels, _save(tmp_path / "p_nan.npy", nan)],
                            "invalid record id=3: pred_probs[0] is nan"),
        "pickled labels": ([str(evil_path), good_probs], "refusing to unpickle"),
        "pickled probs": ([good_labels, str(evil_path)], "refusing to unpickle"),
        "float labels": ([_save(tmp_path / "l_float.npy", np.array([0.0, 1, 2, 1])), good_probs], "integer dtype"),
        "1-D pred_probs": ([good_labels, _save(tmp_path / "p1.npy", np.ones(4))], "2-D array"),
        "not a .npy": ([str(tmp_path / "text.npy"), good_probs], "not a .npy file"),
    }


def test_bad_inputs_give_a_clear_error_and_no_traceback(tmp_path):
    (tmp_path / "text.npy").write_text("hello")
    marker, cases = _bad_inputs(tmp_path)
    for name, ((labels, probs), message) in cases.items():
        result = run_cli("--labels_file", labels, "--pred_probs_file", probs, "--output", str(tmp_path / "out"),
                         "--runner=FnApiRunner")
        assert result.returncode == cli.EXIT_BAD_INPUT, (name, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr, (name, result.stderr)
        assert message in result.stderr, (name, result.stderr)
    assert not marker.exists(), "a pickled .npy was unpickled"
    with pytest.raises(ValueError):  # the fixture is an object array that only unpickling reads
        np.load(str(tmp_path / "evil.npy"), allow_pickle=False)


def test_tolerated_rounding_is_used_as_given(tmp_path):
    labels = _save(tmp_path / "labels.npy", np.array([0, 1, 1, 0], dtype=np.uint64))
    probs = np.array([[1.00001, -0.00001], [0.3, 0.7], [0.9, 0.1], [0.2, 0.8]])
    probs_path = _save(tmp_path / "probs.npy", probs)
    result = run_cli("--labels_file", labels, "--pred_probs_file", probs_path, "--output", str(tmp_path / "out"),
                     "--method", "confidence_weighted_entropy", "--runner=FnApiRunner", "--write_scores")
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["num_examples"] == 4 and summary["num_invalid_records"] == 0
    assert summary["confident_thresholds"][0] == pytest.approx((1.00001 + 0.2) / 2, abs=1e-15)


def test_unknown_option_is_refused():
    result = run_cli("--metod", "self_confidence")
    assert result.returncode == 2 and "unrecognized arguments: --metod" in result.stderr


def test_class_names_reach_the_issues_summary_and_report_and_report_rebuilds(tmp_path):
    names = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    (tmp_path / "names.json").write_text(json.dumps(names))
    out_dir = tmp_path / "out"
    result = run_cli("--output", str(out_dir), "--class_names", str(tmp_path / "names.json"), "--runner=FnApiRunner")
    assert result.returncode == 0, result.stderr
    table = pq.read_table(glob.glob(str(out_dir / "label_issues-*.parquet"))[0]).to_pydict()
    assert table["given_label_name"] == [names[k] for k in table["given_label"]]
    assert table["predicted_label_name"] == [names[k] for k in table["predicted_label"]]
    assert json.loads((out_dir / "summary.json").read_text())["class_names"] == names
    first = min(zip(table["rank"], table["given_label"]))[1]
    assert f"{names[first]} ({first})" in result.stdout
    report = out_dir / "report.html"
    assert "seven (7)" in report.read_text()
    report.unlink()
    rebuilt = run_cli("report", str(out_dir))
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert report.exists() and "seven (7)" in report.read_text()
    wrong = tmp_path / "three.txt"
    wrong.write_text("a\nb\nc\n")
    refused = run_cli("--output", str(tmp_path / "o2"), "--class_names", str(wrong))
    assert refused.returncode == 2 and "names 3 classes, but the data has 10" in refused.stderr


def test_local_workers_follow_the_data_size_unless_the_user_chose():
    big = cli.MULTI_PROCESS_FROM_BYTES
    assert cli.local_worker_args([], big - 1) == []
    many = cli.local_worker_args([], big)
    if (os.cpu_count() or 1) >= 2:
        assert many == [f"--direct_num_workers={os.cpu_count()}", "--direct_running_mode=multi_processing"]
    for chosen in (["--runner", "FlinkRunner"], ["--direct_num_workers=1"], ["--direct_running_mode", "in_memory"]):
        assert cli.local_worker_args(chosen, big) == []
    one = cli.pipeline_options(["--runner=FnApiRunner"])
    two = cli.pipeline_options(["--direct_num_workers=2", "--direct_running_mode=multi_processing"])
    assert cli.runs_in_one_local_worker(one) and not cli.runs_in_one_local_worker(two)
    assert not cli.runs_in_one_local_worker(cli.pipeline_options(["--runner=PortableRunner"]))
