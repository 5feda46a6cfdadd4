"""The Dataflow Flex Template stays in step with the pipeline's command line, its image
is pinned to the packages the tests ran with, the pipeline translates for DataflowRunner
offline (Beam's --dry_run), and a launch as the Flex Template launcher makes it (with
--template_location) writes the job and exits 0."""

from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import os
import platform
import re
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from datasets import DatasetSpec, make_dataset
from harness import REPO_ROOT, run_cli
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
    "pred_probs_file": ("gs://bucket/pred_probs.npy", "gs://bucket/pred_probs.npy"),
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
    "row_sum_tolerance": ("inf", float("inf")),
    "on_invalid": ("skip", "skip"),
    "output": ("gs://bucket/out/dt=2026-11-28", "gs://bucket/out/dt=2026-11-28"),
    "overwrite": ("true", True),
    "write_scores": ("true", True),
    "batch_size": ("4096", 4096),
    "human_review": ("review.json", "review.json"),
    "class_names": ("gs://bucket/classes.txt", "gs://bucket/classes.txt"),
    "no_report": ("true", True),
    "quiet": ("false", False),
    "example_uri_template": ("gs://bucket/images/{id}.jpg", "gs://bucket/images/{id}.jpg"),
    "export": ("labelstudio,csv", ["labelstudio", "csv"]),
    "max_issue_rate": ("0.05", 0.05),
}


def _metadata():
    with open(os.path.join(TEMPLATES, "metadata.json"), encoding="utf-8") as handle:
        return json.load(handle)


# Parameters naming files: the image reads Cloud Storage (apache-beam[gcp]); a local path would
# be the launcher VM's and s3:// needs the aws extra, which the image does not install.
PATH_PARAMETERS = {"input", "labels_file", "pred_probs_file", "output", "class_names"}
# Values tried on every parameter the CLI parses as a number, a switch or a choice.
PROBES = [
    "", "0", "00", "1", "01", "2", "002", "10", "4096", "65536", "-1", "+2", " 2", "2 ", "1_000", "2.0", "1e3",
    ".5", "5.", "1e-4", "1E+2", "1e999", "-0.1", "inf", "nan", "0x10", "ten", "true", "false", "True", "FALSE",
    "tRuE", "yes", "no", "t", "1.0.0", "skip", "self_confidence", "off_diagonal", "SKIP",
]


def _cli_options():
    """dest -> argparse action, for every option of the command line but --help and --version."""
    return {
        a.dest: a
        for a in cli.build_arg_parser()._actions
        if not isinstance(a, (argparse._HelpAction, argparse._VersionAction))
    }


def _cli_accepts(name: str, value: str) -> bool:
    try:
        cli.parse_args([f"--{name}={value}"])
    except SystemExit:
        return False
    return True


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
    if action.default not in (None, False) and not action.choices and name != "output":
        assert str(action.default) in parameter["helpText"], f"{name}: the template should state the default"


@pytest.mark.parametrize("name", sorted(n for n, a in _cli_options().items() if a.type is not None or a.choices))
def test_template_regexes_accept_exactly_what_the_cli_accepts(name, capsys):
    """Numbers, switches and choices: a value passes the template's regexes if and only if
    the command line takes it (num_classes from 2, batch sizes from 1, ...)."""
    parameter = {p["name"]: p for p in _metadata()["parameters"]}[name]
    regexes = parameter.get("regexes", [])
    assert regexes, f"{name}: the template should check its values"
    action = _cli_options()[name]
    values = PROBES + list(action.choices or [])
    accepted = {v for v in values if _cli_accepts(name, v)}
    assert accepted, f"{name}: no probe is a valid value"
    for value in values:
        template_accepts = all(re.fullmatch(r, value) for r in regexes)
        assert template_accepts == (value in accepted), (name, value, template_accepts)
    capsys.readouterr()  # argparse's usage messages for the refused values


def test_template_paths_are_cloud_storage_paths():
    parameters = {p["name"]: p for p in _metadata()["parameters"]}
    for name in PATH_PARAMETERS:
        regexes = parameters[name]["regexes"]
        for path in ("gs://bucket/preds/*.parquet", "gs://bucket/out/dt=2026-11-28"):
            assert all(re.fullmatch(r, path) for r in regexes), (name, path)
        for path in ("/data/preds.parquet", "preds.parquet", "s3://bucket/preds.parquet", "gs://", ""):
            assert not all(re.fullmatch(r, path) for r in regexes), (name, path)


def test_dockerfile_installs_the_package_on_the_python_launcher_image():
    with open(os.path.join(TEMPLATES, "Dockerfile"), encoding="utf-8") as handle:
        text = handle.read()
    assert re.search(r"^FROM gcr\.io/dataflow-templates-base/python311-template-launcher-base\s*$", text, re.M)
    # Every package pinned, with the report extra beside gcp.
    assert re.search(r'pip install [^\n]*-c templates/constraints\.txt "\.\[gcp,report\]"', text)
    assert "COPY templates/constraints.txt" in text
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
    # The Docker-less build: gcloud writes the image from the repository and these variables.
    assert "--flex-template-base-image gcr.io/dataflow-templates-base/python311-template-launcher-base" in text
    assert "--py-path ." in text
    for variable in re.findall(r'--env "?(\w+=[^"\s]+)', text):
        name, value = variable.split("=", 1)
        if name.startswith("FLEX_TEMPLATE_PYTHON_") and name.endswith("_FILE"):
            assert os.path.isfile(os.path.join(REPO_ROOT, value)), variable
    assert "FLEX_TEMPLATE_PYTHON_PY_FILE=pipelines/find_label_issues.py" in text
    assert "FLEX_TEMPLATE_PYTHON_REQUIREMENTS_FILE=templates/requirements-launcher.txt" in text
    assert "FLEX_TEMPLATE_PYTHON_SETUP_FILE=setup.py" in text and "PYTHONPATH=/template" in text
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


@pytest.mark.skipif(
    sys.version_info[:2] != (3, 11) or platform.system() != "Linux",
    reason="the pins are for the launcher image's Python 3.11 on Linux",
)
def test_image_pins_are_the_versions_the_tests_run_with():
    """templates/constraints.txt pins every package of .[gcp,report] (apache-beam, numpy,
    pyarrow and all they need) to the version installed here, and
    requirements-launcher.txt the direct requirements; templates/pin_versions.py writes both."""
    spec = importlib.util.spec_from_file_location("pin_versions", os.path.join(TEMPLATES, "pin_versions.py"))
    pin_versions = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pin_versions)
    for path, expected in pin_versions.expected_files().items():
        with open(path, encoding="utf-8") as handle:
            assert handle.read() == expected, (
                f"{path} differs from the installed versions: install with -c templates/constraints.txt "
                "(as .ci/run does), or after an upgrade re-pin with python templates/pin_versions.py")
    with open(pin_versions.CONSTRAINTS, encoding="utf-8") as handle:
        pins = dict(line.strip().split("==") for line in handle if line.strip() and not line.startswith("#"))
    import apache_beam
    import numpy
    import pyarrow

    assert pins["apache-beam"] == apache_beam.__version__ and pins["numpy"] == numpy.__version__
    assert pins["pyarrow"] == pyarrow.__version__
    assert "matplotlib" not in pins  # the report draws its figures itself
    assert "google-cloud-storage" in pins and "cleanlab" not in pins and "pytest" not in pins


def test_flex_template_launch_writes_the_job_and_exits_0(tmp_path):
    """The launcher runs pipelines/find_label_issues.py with the template's parameters as
    --name=value and Dataflow's own options, --template_location among them; Beam's
    DataflowRunner then writes the job there and returns before anything runs, and the
    launcher submits it. The CLI must exit 0 without waiting, reading summary.json or
    touching --output, which the job writes later.

    Offline: Cloud Storage paths become local folders (Beam stages files to a local path
    as it would to gs://), and --dataflow_endpoint on localhost keeps Beam's option
    check from looking up the staging bucket; nothing is sent anywhere."""
    try:
        from apache_beam.portability.api import beam_runner_api_pb2
        from apache_beam.runners.dataflow.internal import apiclient  # noqa: F401
    except ImportError:
        pytest.skip("apache-beam[gcp] is not installed: pip install -e '.[test]' (or '.[gcp]')")
    labels, probs = make_dataset(DatasetSpec(200, 3))
    pq.write_table(examples_table(labels, probs, ids=[f"e{i}" for i in range(200)]), str(tmp_path / "a.parquet"))
    output = tmp_path / "label_issues" / "dt=2026-11-28"
    # An earlier run of ours in --output: a submitted job may write there (it replaces only
    # that run's files); a directory of other files would be refused.
    earlier = run_cli("--output", output, "--no_report", "--quiet")
    assert earlier.returncode == 0, earlier.stderr
    before = {name: (output / name).read_bytes() for name in os.listdir(output)}
    staging = tmp_path / "staging"
    job_object = staging / "template_launches" / "2026-11-28_03_00_00-1234" / "job_object"
    job_object.parent.mkdir(parents=True)
    (tmp_path / "tmp").mkdir()
    parameters = {
        "input": str(tmp_path / "*.parquet"), "id_column": "example_id", "on_invalid": "skip",
        "write_scores": "true", "output": str(output),
    }
    launcher = [
        "--runner=DataflowRunner", "--project=fake-project", "--region=us-central1",
        "--job_name=label-issues-20261128", f"--staging_location={staging}", f"--temp_location={tmp_path / 'tmp'}",
        f"--template_location={job_object}", "--labels=team=ml",
    ]
    offline = ["--no_auth", "--sdk_location=container", "--dataflow_endpoint=http://localhost:1"]
    command = [sys.executable, os.path.join(REPO_ROOT, "pipelines", "find_label_issues.py")]
    command += [f"--{name}={value}" for name, value in parameters.items()] + launcher + offline
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-5000:]
    assert f"Job written to {job_object}" in result.stdout and "Examples read" not in result.stdout
    assert "Traceback" not in result.stderr, result.stderr[-5000:]
    # The job: a batch job with the launcher's name, and --labels (not --labels_file) reached it.
    job = json.loads(job_object.read_text())
    assert job["name"] == "label-issues-20261128" and job["type"] == "JOB_TYPE_BATCH"
    assert job["labels"] == {"team": "ml"}
    # Its pipeline, staged beside it: the label issues transforms and the writer of --output.
    pipeline = beam_runner_api_pb2.Pipeline.FromString((staging / "pipeline.pb").read_bytes())
    names = {t.unique_name for t in pipeline.components.transforms.values()}
    for step in ("FindLabelIssues/ConfidentThresholds", "WriteLabelIssues/WriteLabelIssues", "WriteLabelIssues/WriteSummary"):
        assert any(n == step or n.startswith(step + "/") for n in names), step
    # --output untouched: the earlier run's summary.json is neither read nor removed.
    assert {name: (output / name).read_bytes() for name in os.listdir(output)} == before
