"""The Dataflow Flex Template stays in step with the pipeline's command line, and the
pipeline translates for DataflowRunner offline (Beam's --dry_run)."""

from __future__ import annotations

import argparse
import ast
import json
import os
import re

import pyarrow.parquet as pq
import pytest

from datasets import DatasetSpec, make_dataset
from harness import REPO_ROOT
from input_files import examples_table

from beam_labelissues import cli

TEMPLATES = os.path.join(REPO_ROOT, "templates")
# Required by the template though the CLI has a default: a local ./label_issues_output
# on a Dataflow launcher would be lost with it.
REQUIRED_IN_TEMPLATE_ONLY = {"output"}
# A value for each template parameter that its regexes accept, and what the CLI makes of it.
SAMPLES = {
    "input": ("gs://bucket/preds/dt=2026-11-28/*.parquet", "gs://bucket/preds/dt=2026-11-28/*.parquet"),
    "label_column": ("y", "y"),
    "pred_probs_column": ("probs", "probs"),
    "pred_probs_columns": ("p_*", "p_*"),
    "id_column": ("example_id", "example_id"),
    "labels_file": ("gs://bucket/labels.npy", "gs://bucket/labels.npy"),
    "pred_probs_file": ("s3://bucket/pred_probs.npy", "s3://bucket/pred_probs.npy"),
    "num_classes": ("10", 10),
    "method": ("normalized_margin", "normalized_margin"),
    "adjust_pred_probs": ("true", True),
    "estimation_method": ("off_diagonal_calibrated", "off_diagonal_calibrated"),
    "filter_by": ("prune_by_noise_rate", "prune_by_noise_rate"),
    "frac_noise": ("0.5", 0.5),
    "num_to_remove_per_class": ("3,0,5", (3, 0, 5)),
    "min_examples_per_class": ("50", 50),
    "calibration_tie_break": ("class_index", "class_index"),
    "tolerance": ("1e-3", 1e-3),
    "on_invalid": ("skip", "skip"),
    "output": ("gs://bucket/out/dt=2026-11-28", "gs://bucket/out/dt=2026-11-28"),
    "write_scores": ("true", True),
    "batch_size": ("4096", 4096),
    "human_review": ("review.json", "review.json"),
    "class_names": ("gs://bucket/classes.txt", "gs://bucket/classes.txt"),
    "no_report": ("true", True),
    "quiet": ("false", False),
}


def _metadata():
    with open(os.path.join(TEMPLATES, "metadata.json"), encoding="utf-8") as handle:
        return json.load(handle)


def _cli_options():
    """dest -> argparse action, for every option of the command line but --help."""
    return {a.dest: a for a in cli.build_arg_parser()._actions if not isinstance(a, argparse._HelpAction)}


def test_every_template_parameter_is_a_cli_option_and_every_option_a_parameter():
    parameters = {p["name"]: p for p in _metadata()["parameters"]}
    options = _cli_options()
    assert len(parameters) == len(_metadata()["parameters"]), "a parameter is listed twice"
    assert set(parameters) == set(options)
    for name, action in options.items():
        assert f"--{name}" in action.option_strings, "the parameter name must be the option's flag"
        if action.required:
            assert parameters[name]["isOptional"] is False, f"{name} is required by the CLI"
    required = {name for name, p in parameters.items() if not p["isOptional"]}
    assert required == {n for n, a in options.items() if a.required} | REQUIRED_IN_TEMPLATE_ONLY


def test_every_parameter_is_described():
    for parameter in _metadata()["parameters"]:
        assert set(parameter) <= {"name", "label", "helpText", "isOptional", "regexes"}, parameter
        assert parameter["label"] and len(parameter["helpText"]) > 30, parameter["name"]
        assert isinstance(parameter["isOptional"], bool)
    metadata = _metadata()
    assert metadata["name"] and metadata["description"] and metadata["sdkInfo"] == {"language": "PYTHON"}


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_a_template_value_means_the_same_to_the_cli(name):
    """A value the template accepts parses, as --name=value, to the value the CLI means;
    choices and switches accept exactly what the CLI accepts."""
    parameter = {p["name"]: p for p in _metadata()["parameters"]}[name]
    action = _cli_options()[name]
    text, meaning = SAMPLES[name]
    for regex in parameter.get("regexes", []):
        assert re.fullmatch(regex, text), (regex, text)
    args, rest = cli.parse_args([f"--{name}={text}"])
    assert getattr(args, name) == meaning and rest == []
    regexes = parameter.get("regexes", [])
    if action.choices:
        assert regexes, f"{name} has choices: the template should check them"
        for choice in action.choices:
            assert all(re.fullmatch(r, choice) for r in regexes)
        assert not all(re.fullmatch(r, "not_a_choice") for r in regexes)
        assert parameter["helpText"].count("default") + parameter["helpText"].count("Default") >= 1
        if action.default is not None:  # None: the option is off unless given (filter_by)
            assert action.default in parameter["helpText"]
    if action.type is cli._flag_value:
        for value, expected in (("true", True), ("false", False)):
            assert all(re.fullmatch(r, value) for r in regexes)
            assert getattr(cli.parse_args([f"--{name}={value}"])[0], name) is expected
        assert getattr(cli.parse_args([f"--{name}"])[0], name) is True
    if action.type in (int, float):
        assert regexes and not any(re.fullmatch(r, "ten") for r in regexes)
    if action.default not in (None, False) and not action.choices and name != "output":
        assert str(action.default) in parameter["helpText"], f"{name}: the template should state the default"


def test_dockerfile_installs_the_package_on_the_python_launcher_image():
    with open(os.path.join(TEMPLATES, "Dockerfile"), encoding="utf-8") as handle:
        text = handle.read()
    assert re.search(r"^FROM gcr\.io/dataflow-templates-base/python311-template-launcher-base\s*$", text, re.M)
    assert re.search(r'pip install [^\n]*"\.\[gcp\]"', text)
    assert "COPY setup.py" in text
    py_file = re.search(r'FLEX_TEMPLATE_PYTHON_PY_FILE="\$\{WORKDIR\}/(\S+)"', text).group(1)
    setup_file = re.search(r'FLEX_TEMPLATE_PYTHON_SETUP_FILE="\$\{WORKDIR\}/(\S+)"', text).group(1)
    assert os.path.isfile(os.path.join(REPO_ROOT, py_file)) and py_file == "pipelines/find_label_issues.py"
    assert os.path.isfile(os.path.join(REPO_ROOT, setup_file))
    for copied in re.findall(r"^COPY (.+) \./", text, re.M):
        for path in copied.split():
            assert os.path.exists(os.path.join(REPO_ROOT, path)), path


def test_readme_has_the_build_run_and_schedule_commands():
    with open(os.path.join(TEMPLATES, "README.md"), encoding="utf-8") as handle:
        text = handle.read()
    assert "gcloud dataflow flex-template build" in text and "--metadata-file templates/metadata.json" in text
    assert "gcloud dataflow flex-template run" in text and "--template-file-gcs-location" in text
    assert "DataflowStartFlexTemplateOperator" in text
    names = {p["name"] for p in _metadata()["parameters"]}
    for used in re.findall(r"--parameters (\w+)=", text):
        assert used in names, used
    for used in re.findall(r'^\s+"(\w+)": ', text, re.M):
        if used not in ("launchParameter", "jobName", "containerSpecGcsPath", "parameters", "environment"):
            assert used in names, used


def test_gcp_extra_and_lean_base_install():
    with open(os.path.join(REPO_ROOT, "setup.py"), encoding="utf-8") as handle:
        tree = ast.parse(handle.read())
    call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "setup")
    keywords = {k.arg: ast.literal_eval(k.value) for k in call.keywords if k.arg in ("install_requires", "extras_require")}
    assert not any("gcp" in r or "google" in r for r in keywords["install_requires"])
    assert any(r.startswith("apache-beam[gcp]") for r in keywords["extras_require"]["gcp"])


def test_pipeline_translates_for_dataflow_offline(tmp_path, capsys):
    """DataflowRunner with --dry_run=True builds the job (runner API proto and the Dataflow
    job request) without credentials or network, and nothing is written."""
    try:
        from apache_beam.runners.dataflow.internal import apiclient  # noqa: F401
    except ImportError:
        pytest.skip("apache-beam[gcp] is not installed: pip install -e '.[test]' (or '.[gcp]')")
    labels, probs = make_dataset(DatasetSpec(100, 3))
    pq.write_table(examples_table(labels, probs, ids=[f"e{i}" for i in range(100)]), str(tmp_path / "a.parquet"))
    output = "gs://fake-bucket/label_issues"
    argv = [
        "--input", str(tmp_path / "*.parquet"), "--id_column", "example_id", "--output", output,
        "--on_invalid", "skip", "--write_scores", "--no_report", "--quiet",
        "--runner", "DataflowRunner", "--project", "fake-project", "--region", "us-central1",
        "--temp_location", "gs://fake-bucket/tmp", "--no_auth", "--sdk_location", "container", "--dry_run=True",
    ]
    args, beam_args = cli.parse_args(argv)
    pipeline = cli.build_pipeline(args, beam_args)
    result = pipeline.run()
    job = json.loads(result.job.json())
    assert job["name"] and job["type"] == "JOB_TYPE_BATCH"
    transforms = pipeline.runner.proto_pipeline.components.transforms
    names = {t.unique_name for t in transforms.values()}
    for step in ("FindLabelIssues/ConfidentThresholds", "FindLabelIssues/ScanExamples",
                 "FindLabelIssues/ReadForCutoffBin", "FindLabelIssues/ReadForThresholds/Read",
                 "WriteLabelIssues/WriteLabelIssues", "WriteLabelIssues/WriteSummary"):
        assert any(n == step or n.startswith(step + "/") for n in names), step
    # Through the command line: exit 0, says it was a dry run, touches no output.
    assert cli.main(argv) == 0
    assert "Dry run" in capsys.readouterr().out
