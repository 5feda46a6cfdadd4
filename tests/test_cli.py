"""The command line end to end, through a subprocess: the demo default and every bad input."""

from __future__ import annotations

import glob
import importlib.util
import json
import os
import re
import sys

import apache_beam as beam
import numpy as np
import pyarrow.parquet as pq
import pytest
from apache_beam.options.pipeline_options import GoogleCloudOptions, PipelineOptions
from cleanlab.experimental.label_issues_batched import find_label_issues_batched

from harness import run_cli, write_pickle_bomb

from beam_labelissues import cli, demo
from beam_labelissues._version import __version__
from beam_labelissues.io.human_review import load_human_review, review_of_issues
from beam_labelissues.validation import UsageError


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
    for action in cli.build_arg_parser()._actions:
        assert action.help and len(action.help) > 20, action.option_strings
        for flag in action.option_strings:
            assert flag in result.stdout, flag
    for text in ["--runner", "self_confidence", "off_diagonal_calibrated", "no abbreviations", "--template_location",
                 "FlinkRunner", "flink-job-server", "report OUTDIR"]:
        assert text in " ".join(result.stdout.split()), text


def test_version_prints_the_package_and_beam_versions():
    result = run_cli("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"beam-labelissues {__version__} (apache-beam {beam.__version__})\n"


def test_option_names_are_never_abbreviated_so_dataflow_labels_reach_beam():
    # --labels is Dataflow's job labels option; argparse used to take it for --labels_file.
    for argv in (["--labels", "team=ml"], ["--labels=team=ml"]):
        args, beam_args = cli.parse_args(argv)
        assert args.labels_file is None and beam_args == argv
        assert PipelineOptions(beam_args).view_as(GoogleCloudOptions).labels == ["team=ml"]
    # A prefix of one of our options is not that option.
    result = run_cli("--metho", "normalized_margin")
    assert result.returncode == 2 and "unrecognized arguments: --metho" in result.stderr


def test_cli_log_lines_show_in_a_default_install(tmp_path):
    """Without apache-beam[gcp] (a plain pip install), importing Beam warns at once and so
    gives the root logger a handler before the CLI configures logging; the CLI's own INFO
    lines must show all the same, and local worker processes must not fill stderr with
    their start-up. The missing extra is reproduced by hiding google-apitools from every
    process (a sitecustomize on PYTHONPATH, which the worker processes inherit)."""
    hide = tmp_path / "without_gcp"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text("import sys\nsys.modules['apitools'] = None  # as if not installed\n")
    pythonpath = os.pathsep.join(p for p in (str(hide), os.environ.get("PYTHONPATH", "")) if p)
    result = run_cli("--output", str(tmp_path / "out"), "--no_report", "--runner=FnApiRunner",
                     "--direct_num_workers=2", "--direct_running_mode=multi_processing",
                     env={"PYTHONPATH": pythonpath})
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert "WARNING:root:apitools not found" in result.stderr  # the default install's import-time warning
    assert any(" INFO beam_labelissues: reading " in line for line in lines), result.stderr
    assert any(" INFO beam_labelissues: pipeline finished in " in line for line in lines), result.stderr
    for noise in ("sdk_worker", "data_plane", "Pipeline_options", "semi_persistent_directory", "harness"):
        assert noise not in result.stderr, noise
    # Left: the import-time warning of each process and two start-up lines per worker.
    assert len(lines) <= 12, result.stderr


def test_unusable_output_location_is_one_line_error(tmp_path):
    (tmp_path / "a_file").write_text("not a directory")
    cases = {
        "foo://bucket/out": "error: --output foo://bucket/out: no filesystem handles foo:// paths",
        str(tmp_path / "a_file" / "out"): f"error: --output {tmp_path / 'a_file' / 'out'}: is a path through a file",
    }
    if importlib.util.find_spec("boto3") is None:  # without the aws extra
        cases["s3://bucket/out"] = "pip install 'beam-labelissues[aws]' adds s3://"
    for output, message in cases.items():
        result = run_cli("--output", output, "--no_report", "--runner=FnApiRunner")
        assert result.returncode == 2, (output, result.stderr)
        assert "Traceback" not in result.stderr, result.stderr
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and message in errors[0], (output, result.stderr)


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
    # A source that decodes in a thread of its own (Parquet) counts it as a core it uses.
    halved = (os.cpu_count() or 1) // 2
    expected = [f"--direct_num_workers={halved}", "--direct_running_mode=multi_processing"] if halved >= 2 else []
    assert cli.local_worker_args([], big, decode_threads=1) == expected
    one = cli.pipeline_options(["--runner=FnApiRunner"])
    two = cli.pipeline_options(["--direct_num_workers=2", "--direct_running_mode=multi_processing"])
    assert cli.runs_in_one_local_worker(one) and not cli.runs_in_one_local_worker(two)
    assert not cli.runs_in_one_local_worker(cli.pipeline_options(["--runner=PortableRunner"]))


# --- the review workflow: links, exports and the issue-rate gate -------------------------------


def test_review_workflow_writes_everything_then_exits_4_when_issues_exceed_the_rate(tmp_path):
    out_dir = tmp_path / "out"
    template = "https://labelerrors.com/static/mnist/{id}.png"
    result = run_cli("--output", str(out_dir), "--runner=FnApiRunner", "--export", "labelstudio,csv",
                     "--example_uri_template", template, "--max_issue_rate", "0.001")
    assert result.returncode == cli.EXIT_ISSUE_RATE_EXCEEDED == 4, result.stderr
    assert ("Label issues are 0.15% of the examples (15 of 10,000), more than --max_issue_rate 0.10%: "
            "exit code 4.") in result.stderr
    assert "Traceback" not in result.stderr
    summary = json.loads((out_dir / "summary.json").read_text())
    assert summary["export_files"] == ["label_issues.csv", "label_issues_labelstudio.json",
                                       "label_issues_labelstudio_config.xml"]
    for name in summary["export_files"] + ["report.html"]:
        assert (out_dir / name).is_file(), name
        assert str(out_dir / name) in result.stdout
    assert summary["options"]["max_issue_rate"] == 0.001 and summary["options"]["export"] == ["labelstudio", "csv"]
    assert summary["options"]["example_uri_template"] == template and summary["tool_version"]
    table = pq.read_table(glob.glob(str(out_dir / "label_issues-*.parquet"))[0]).to_pydict()
    assert table["uri"] == [template.replace("{id}", str(i)) for i in table["id"]]
    page = (out_dir / "report.html").read_text()
    assert f'<a href="{table["uri"][0]}"' in page and 'id="human-review"' in page
    tasks = json.loads((out_dir / "label_issues_labelstudio.json").read_text())
    assert [t["data"]["image"] for t in tasks] == table["uri"]  # both in rank order


def test_issue_rate_at_or_below_the_limit_exits_0(tmp_path, capsys):
    """15 issues in 10,000 examples: a limit of exactly 0.15% passes, in process."""
    argv = ["--output", str(tmp_path / "out"), "--runner=FnApiRunner", "--no_report", "--quiet",
            "--max_issue_rate", "0.0015"]
    assert cli.main(argv) == 0
    assert "max_issue_rate" not in capsys.readouterr().err
    summary = cli.outputs.read_summary(str(tmp_path / "out"))
    assert cli.issue_rate_exceeded(summary, 0.0014999, out=sys.stdout)
    assert not cli.issue_rate_exceeded(summary, 0.0015) and not cli.issue_rate_exceeded(summary, None)


@pytest.mark.parametrize("argv, message", [
    (["--export", "coco"], "unknown format 'coco'"),
    (["--max_issue_rate", "5"], "expected a share between 0 and 1 such as 0.05, got '5'"),
    (["--max_issue_rate", "-0.1"], "between 0 and 1"),
    (["--max_issue_rate", "1e-2"], "between 0 and 1"),
    (["--max_issue_rate", "nan"], "between 0 and 1"),
])
def test_review_workflow_usage_errors_exit_2(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.parse_args(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("template, message", [
    ("gs://b/{name}.jpg", "uses {name}: only {id} is allowed"),
    ("gs://b/{id:05d}.jpg", "uses {id:05d}"),
    ("gs://b/{}.jpg", "uses {}"),
    ("gs://b/{id!r}.jpg", "uses {id!r}"),
    ("gs://b/image.jpg", "has no {id}"),
    ("gs://b/{id.jpg", "is not a valid template"),
])
def test_a_bad_uri_template_is_refused_before_anything_runs(template, message, tmp_path):
    args, beam_args = cli.parse_args(["--output", str(tmp_path / "out"), "--example_uri_template", template])
    with pytest.raises(UsageError, match=re.escape(message)):
        cli.build_pipeline(args, beam_args)
    assert not (tmp_path / "out").exists()


def test_uri_template_with_literal_braces():
    from beam_labelissues.example_uris import format_uri, template_parts

    assert template_parts("s3://b/{{raw}}/{id}/{id}.png") == ["s3://b/{raw}/", "/", ".png"]
    assert format_uri("s3://b/{{raw}}/{id}.png", 7) == "s3://b/{raw}/7.png"


@pytest.mark.parametrize("text, share", [("0", 0.0), ("00", 0.0), ("0.05", 0.05), (".5", 0.5), ("1", 1.0),
                                          ("1.000", 1.0), ("0.", 0.0)])
def test_max_issue_rate_takes_plain_decimal_shares(text, share):
    assert cli.parse_args(["--max_issue_rate", text])[0].max_issue_rate == share


def test_report_subcommand_takes_a_human_review_exports_and_gates(tmp_path, capsys):
    """After a run that did not wait (a template launch, say): report, export and gate in one step."""
    out_dir = tmp_path / "out"
    assert cli.main(["--output", str(out_dir), "--runner=FnApiRunner", "--no_report", "--quiet"]) == 0
    assert not (out_dir / "report.html").exists()
    assert cli.main(["report", str(out_dir), "--human_review", demo.DEMO_HUMAN_REVIEW]) == 0
    page = (out_dir / "report.html").read_text()
    assert "mnist_mturk.json: 15 of the 15 flagged examples were reviewed" in page
    capsys.readouterr()
    code = cli.main(["report", str(out_dir), "--export", "csv", "--max_issue_rate", "0.001"])
    assert code == cli.EXIT_ISSUE_RATE_EXCEEDED
    assert "more than --max_issue_rate 0.10%: exit code 4." in capsys.readouterr().err
    summary = json.loads((out_dir / "summary.json").read_text())
    assert summary["export_files"] == ["label_issues.csv"] and (out_dir / "label_issues.csv").is_file()
    assert "label_issues.csv" in (out_dir / "report.html").read_text()
    assert cli.main(["report", str(out_dir), "--max_issue_rate", "0.01"]) == 0


@pytest.mark.parametrize("given", [None, "jemalloc"])
def test_the_command_allocates_arrow_memory_with_the_system_allocator_unless_told_otherwise(given):
    """The command (not the library) switches Arrow to the system allocator, which returns
    freed row groups to the OS, and passes the choice to local worker processes; an
    ARROW_DEFAULT_MEMORY_POOL the user set wins."""
    import subprocess

    env = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    if given:
        env["ARROW_DEFAULT_MEMORY_POOL"] = given
    code = ("import os, pyarrow as pa; from beam_labelissues import cli; before = pa.default_memory_pool().backend_name;"
            "cli.use_system_allocator(); print(before, pa.default_memory_pool().backend_name,"
            " os.environ['ARROW_DEFAULT_MEMORY_POOL'])")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout.split()
    if given:
        assert out == [given, given, given]
    else:
        assert out[1:] == ["system", "system"] and out[0] != "system"
