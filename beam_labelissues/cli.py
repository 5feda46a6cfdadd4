"""The command line: ``beam-labelissues``, ``python -m beam_labelissues`` and the Flex Template.

One run flows down once: parse the options -> open the inputs (``io.inputs``) ->
take the output directory (``io.output_dir``: lock, staging directory) ->
``FindLabelIssues`` -> ``WriteLabelIssues`` into staging -> run -> read the
outputs back once (``report.ReportData``) -> report.html and exports into staging
-> publish -> print the summary. With no input options it runs on the bundled
MNIST demo data. Every Apache Beam pipeline option passes through (``--runner``,
``--direct_num_workers``, ...).

When the run only submits or describes a job (``--template_location``, as the
Dataflow Flex Template launcher passes, or ``--dry_run``), the CLI builds and
submits the pipeline and exits 0 without waiting: the job writes straight into
``--output`` (which must hold no files but an earlier run's), summary.json last.
``--runner FlinkRunner`` without ``--flink_job_server_jar`` gets a job server jar
from ``beam_labelissues.flink``.

Every failure ends with one line starting ``error:`` and an exit code that says
its kind (``EXIT_CODES``); no traceback.
"""

from __future__ import annotations

import argparse
import atexit
import errno
import logging
import os
import re
import shutil
import signal
import sys
import threading
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import apache_beam as beam
import pyarrow as pa
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions, TestOptions

from beam_labelissues import confident_joint, demo, flink, kernels, runners
from beam_labelissues._version import __version__
from beam_labelissues.io import exports
from beam_labelissues.io import inputs as input_files
from beam_labelissues.io import outputs, paths
from beam_labelissues.io.class_names import load_class_names
from beam_labelissues.io.human_review import load_human_review, review_of_issues
from beam_labelissues.io.output_dir import OutputDirectory, check_output_path
from beam_labelissues.options import ON_INVALID_CHOICES, LabelIssuesOptions, default
from beam_labelissues.processes import TRACEBACKS_ENV, InterruptHandler, wait_if_interrupted
from beam_labelissues.transforms import FindLabelIssues
from beam_labelissues.validation import (
    DuplicateIdError,
    InputFileError,
    InvalidRecordError,
    LabelIssuesError,
    RunError,
    UsageError,
)

PROG = "beam-labelissues"
FLINK_JOB_SERVER_COMMAND = "flink-job-server"
DEFAULT_OUTPUT = "label_issues_output"
# The in-process runner: "DirectRunner" would first try to download the Prism runner.
DEFAULT_RUNNER = "FnApiRunner"
# From this much pred_probs on, the local runner gets one worker process per core: below
# it the workers' start-up costs more than they save (see "Runners" in README.md).
MULTI_PROCESS_FROM_BYTES = 1 << 30
_LOCAL_WORKER_OPTIONS = ("--runner", "--direct_num_workers", "--direct_running_mode")
# Options of a runner's Java job server that Python's option classes do not declare;
# Beam passes them on to the job server.
_JOB_SERVER_OPTIONS = {"flink_conf_dir"}
_PRINTED_ISSUES = 10
ARROW_POOL_ENV = "ARROW_DEFAULT_MEMORY_POOL"
_LOG = logging.getLogger("beam_labelissues")

# Exit codes, one per kind of outcome (README.md, "Exit codes").
EXIT_OK = 0
EXIT_RUN_FAILED = 1  # the run itself failed: no space left, a filesystem or runner failure
EXIT_USAGE = 2  # options that cannot be used: bad values, --output refused, --class_names/--human_review files
EXIT_BAD_INPUT = 3  # the input data: unreadable or refused files, invalid records, duplicate ids
# The run finished and published everything, but label issues are a larger share of the
# examples than --max_issue_rate allows: a scheduler (an Airflow task, say) can stop the
# training run that would follow.
EXIT_ISSUE_RATE_EXCEEDED = 4
EXIT_INTERRUPTED = 128  # + the signal number: 130 for SIGINT (Ctrl-C), 143 for SIGTERM, 129 for SIGHUP
EXIT_CODES = {
    EXIT_OK: "the run finished and its outputs are published",
    EXIT_RUN_FAILED: "the run itself failed (no space left, a filesystem or runner failure); nothing was published",
    EXIT_USAGE: "the command line cannot be used as given (an option, the output directory, a --class_names "
                "or --human_review file); nothing was written",
    EXIT_BAD_INPUT: "the input data is refused (a file, an invalid record, duplicate ids); nothing was published",
    EXIT_ISSUE_RATE_EXCEEDED: "the run finished and its outputs are published, but label issues are more of the "
                              "examples than --max_issue_rate",
    EXIT_INTERRUPTED + signal.SIGINT: "interrupted by SIGINT (Ctrl-C); nothing was published",
    EXIT_INTERRUPTED + signal.SIGTERM: "interrupted by SIGTERM (kill); nothing was published",
    EXIT_INTERRUPTED + signal.SIGHUP: "interrupted by SIGHUP (the terminal closed); nothing was published",
}


def exit_code_of(error: BaseException) -> int:
    """The exit code for an error the command line reports."""
    if isinstance(error, (InputFileError, InvalidRecordError)):
        return EXIT_BAD_INPUT
    if isinstance(error, UsageError):
        return EXIT_USAGE
    return EXIT_RUN_FAILED


# --- the options -------------------------------------------------------------------


# The exact spellings the command line takes for a switch's value and for numbers. The
# Flex Template's regexes (templates/metadata.json) accept the same and nothing else.
_WHOLE_NUMBER = re.compile(r"[0-9]+")
_DECIMAL = re.compile(r"([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?")


def _flag_value(text: str) -> bool:
    """``true`` or ``false`` in any letter case."""
    value = text.lower()
    if value == "true":
        return True
    if value == "false":
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _whole_number(minimum: int) -> Callable[[str], int]:
    """An argparse type: decimal digits only, at least ``minimum``."""

    def parse(text: str) -> int:
        if not _WHOLE_NUMBER.fullmatch(text) or int(text) < minimum:
            raise argparse.ArgumentTypeError(f"expected a whole number, at least {minimum}, got {text!r}")
        return int(text)

    parse.__name__ = f"whole number >= {minimum}"
    return parse


def _non_negative_decimal(text: str) -> float:
    """An argparse type: a non-negative decimal number such as 0.001 or 1e-4."""
    if not _DECIMAL.fullmatch(text):
        raise argparse.ArgumentTypeError(f"expected a non-negative number such as 1e-4, got {text!r}")
    return float(text)


def _non_negative_decimal_or_inf(text: str) -> float:
    """An argparse type: a non-negative decimal number, or ``inf`` (no limit)."""
    return float("inf") if text == "inf" else _non_negative_decimal(text)


def _class_counts(text: str) -> Tuple[int, ...]:
    """``3,0,5`` -> (3, 0, 5): one count per class (checked against K once it is known)."""
    parts = text.split(",")
    if not all(_WHOLE_NUMBER.fullmatch(part) for part in parts):
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers such as 3,0,5, got {text!r}")
    return tuple(int(part) for part in parts)


def _add_flag(group, name: str, help_text: str) -> None:
    """A switch: ``--name`` alone, or ``--name=true|false`` as a Flex Template passes it."""
    group.add_argument(
        name, nargs="?", const=True, default=False, type=_flag_value, metavar="true|false", help=help_text
    )


class _OneLineErrors(argparse.ArgumentParser):
    """argparse, with a usage error as one line (``error: ...``) like every other failure."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"error: {message} ({self.prog} --help explains every option)\n")


def build_arg_parser() -> argparse.ArgumentParser:
    parser = _OneLineErrors(
        prog=PROG,
        # Only whole option names: --labels (Dataflow's job labels) must reach Beam, not
        # be taken for --labels_file.
        allow_abbrev=False,
        description=(
            "Find label issues (examples whose given label is likely wrong) with confident "
            "learning, as cleanlab's find_label_issues_batched does, on any Beam runner. "
            "With no input options it runs on the bundled MNIST demo data. Any option not "
            "listed here is passed to Apache Beam as a pipeline option (for example --runner, "
            "--direct_num_workers, --direct_running_mode, --temp_location, --labels); the default "
            f"runner is {DEFAULT_RUNNER}, Beam's in-process runner. Option names must be given in "
            "full (no abbreviations)."
        ),
        epilog=(
            "Outputs in --output: label_issues-*.parquet (rank, id, given_label, predicted_label, "
            "label_quality; rank 0 is the most severe), summary.json (the manifest, written last: "
            "its presence means the run finished), label_quality_scores-*.parquet with "
            "--write_scores, invalid_records-*.jsonl with --on_invalid skip, and report.html "
            "(unless --no_report). A run writes into a staging directory inside --output "
            "and publishes only when it finished; it then replaces the files the earlier run's "
            "summary.json lists and touches no other file. A non-empty directory without an "
            "earlier run is refused unless --overwrite. "
            "Runners: --runner FlinkRunner without --flink_job_server_jar uses the jar of "
            f"'{PROG} {FLINK_JOB_SERVER_COMMAND}' (built with Maven once, then cached), with --flink_version "
            f"{flink.FLINK_VERSION} and, unless you give --environment_type, the LOOPBACK "
            "environment (workers run in this process; no Docker needed). With --template_location "
            "(as the Dataflow Flex Template launcher passes) or --dry_run=True the job is only "
            "written or translated: nothing runs here and the exit code is 0. "
            f"Subcommands: '{PROG} report OUTDIR' rebuilds report.html from an earlier "
            f"run; '{PROG} {FLINK_JOB_SERVER_COMMAND}' prints the path of the Flink job server jar. Exit codes: "
            + "; ".join(f"{code} {meaning}" for code, meaning in EXIT_CODES.items())
            + "."
        ),
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"{PROG} {__version__} (apache-beam {flink.beam_version()})",
        help="Print the version of this package and of Apache Beam, and exit.",
    )
    npy = parser.add_argument_group(
        "input (.npy files or Zarr stores, as cleanlab's labels_file / pred_probs_file)"
    )
    npy.add_argument(
        "--labels_file",
        help="A .npy file, or a Zarr array store (format 2 or 3: a path ending in .zarr or holding "
        "Zarr metadata; needs pip install 'beam-labelissues[zarr]'), of given labels: 1-D, any "
        "integer dtype, values in [0, K). The example id is the row index. Local path, gs:// or s3://.",
    )
    npy.add_argument(
        "--pred_probs_file",
        help="A .npy file or a Zarr array store (the same format as --labels_file) of predicted "
        "probabilities, N x K, float16/32/64, same N as --labels_file (ideally out-of-sample, "
        "e.g. cross-validated). Zarr stores are read whole chunks at a time.",
    )
    parquet = parser.add_argument_group("input (Parquet files; instead of the .npy files)")
    parquet.add_argument(
        "--input",
        help="Parquet files to read: a file, a folder, or a glob such as "
        "'gs://bucket/preds/*.parquet' (local, gs:// or s3://). A folder is read with pyarrow's "
        "dataset rules: every file below it, hive key=value folders included, names starting with "
        "_ or . ignored (Spark's _SUCCESS, .crc files). A path that names a file or folder is never "
        "read as a glob. Files are read in sorted-name order, row groups in parallel.",
    )
    parquet.add_argument(
        "--label_column",
        help="The column of given labels: any integer type, values in [0, K); or class names "
        "(string, or dictionary as pandas writes a categorical) with --class_names, mapped by name "
        "(a name that is not a class is an invalid record). "
        f"Default: {input_files.DEFAULT_LABEL_COLUMN}.",
    )
    parquet.add_argument(
        "--pred_probs_column",
        help="The column of predicted probabilities: a list, large_list or fixed_size_list of "
        f"float16/32/64, one value per class. Default: {input_files.DEFAULT_PRED_PROBS_COLUMN}.",
    )
    parquet.add_argument(
        "--pred_probs_columns",
        help="Instead of --pred_probs_column, one float column per class: a glob such as 'p_*' "
        "(class order follows the number each name ends with, p_2 before p_10; the numbers must "
        "be consecutive); or the columns in class order, comma-separated, such as "
        "'prob_cat,prob_dog,prob_bird'; or a template such as 'prob_{class}', filled with each "
        "name of --class_names in order.",
    )
    parquet.add_argument(
        "--id_column",
        help="A column of example ids (any integer or string type), carried to the outputs "
        "unchanged. Default: the row index over the files in sorted-name order.",
    )
    parquet.add_argument(
        "--num_classes",
        type=_whole_number(2),
        help="The number of classes K, at least 2. Default: the number of columns of pred_probs (.npy), "
        "else the fixed_size_list size, the number of --pred_probs_columns, or the length of "
        "the first row's list in the first file (Parquet).",
    )
    settings = parser.add_argument_group("confident learning (named as in cleanlab)")
    settings.add_argument(
        "--method",
        choices=kernels.METHODS,
        default=default("method"),
        help="Label quality score: self_confidence = probability of the given label; "
        "normalized_margin = (p_label - max other p + 1) / 2; confidence_weighted_entropy = "
        "normalized entropy over self-confidence, rescaled. Default: %(default)s.",
    )
    _add_flag(
        settings,
        "--adjust_pred_probs",
        "Subtract each class's confident threshold from pred_probs and renormalise before "
        "scoring, to account for class imbalance (not with confidence_weighted_entropy).",
    )
    settings.add_argument(
        "--estimation_method",
        choices=kernels.ESTIMATION_METHODS,
        default=default("estimation_method"),
        help="How to estimate the number of issues n: off_diagonal counts examples whose "
        "confident prediction differs from the label; off_diagonal_calibrated rescales that "
        "count per class by the class's size. Default: %(default)s.",
    )
    settings.add_argument(
        "--threshold_sample_fraction",
        type=_non_negative_decimal,
        default=default("threshold_sample_fraction"),
        metavar="F",
        help="Compute the confident thresholds from a deterministic sample of this share of the "
        "rows, in (0, 1], chosen by id (the same rows on every runner and batch size) - an "
        "approximation cleanlab's documentation suggests for speed; every row is still scored. "
        "summary.json records it. Default: %(default)s (exact, every row).",
    )
    settings.add_argument(
        "--filter_by",
        choices=confident_joint.FILTER_BY,
        default=default("filter_by"),
        help="Find the issues with cleanlab's full method, filter.find_label_issues(filter_by=...), "
        "instead of the batched one (find_label_issues_batched, the default): prune_by_noise_rate "
        "(cleanlab's default: per cell of the confident joint, the rows with the largest margin "
        "toward the likely true class), prune_by_class (per class, the rows least confident in "
        "their label), both (flagged by both), confident_learning (off the joint's diagonal), "
        "predicted_neq_given (argmax differs from the label), low_normalized_margin, "
        "low_self_confidence (the lowest scores, as many as confident_learning finds). "
        "Issues are still ranked by --method. See README.md, 'Methods'.",
    )
    settings.add_argument(
        "--frac_noise",
        type=_non_negative_decimal,
        default=default("frac_noise"),
        help="With a pruning --filter_by: the share of each cell's estimated label errors to flag, "
        "in [0, 1]. Default: %(default)s.",
    )
    settings.add_argument(
        "--num_to_remove_per_class",
        type=_class_counts,
        default=default("num_to_remove_per_class"),
        metavar="N0,N1,...",
        help="With a pruning --filter_by: how many examples to flag in each given class, K "
        "comma-separated integers (cleanlab's num_to_remove_per_class).",
    )
    settings.add_argument(
        "--min_examples_per_class",
        type=_whole_number(0),
        default=default("min_examples_per_class"),
        help="With a pruning --filter_by: a class keeps at least this many examples; a class with "
        "this many or fewer is not pruned. Default: %(default)s.",
    )
    settings.add_argument(
        "--calibration_tie_break",
        choices=confident_joint.TIE_BREAKS,
        default=default("calibration_tie_break"),
        help="How the calibrated confident joint (every run's health, and the pruning methods' "
        "counts) breaks ties when it rounds a row to integers: numpy sorts as cleanlab does "
        "(equal to cleanlab on the same machine, but numpy's order of equal values can differ "
        "between CPUs); class_index moves the lower class first (the same everywhere). "
        "Default: %(default)s.",
    )
    settings.add_argument(
        "--tolerance",
        type=_non_negative_decimal,
        default=default("tolerance"),
        help="A non-negative number such as 1e-4: probabilities within this distance of [0, 1] "
        "are valid and used as given (real "
        "predictions carry rounding such as 1.00001); further out, the record is invalid. "
        "confidence_weighted_entropy clips them into [0, 1]. Default: %(default)s.",
    )
    settings.add_argument(
        "--row_sum_tolerance",
        type=_non_negative_decimal_or_inf,
        default=default("row_sum_tolerance"),
        help="A record whose probabilities sum to further than this from 1 is invalid (confident "
        "learning assumes each row is a distribution over the classes); softmax outputs stored "
        "as float16 pass the default. inf turns the check off. Default: %(default)s.",
    )
    settings.add_argument(
        "--on_invalid",
        choices=ON_INVALID_CHOICES,
        default=default("on_invalid"),
        help="fail: stop at the first invalid record (a label outside [0, K), a NaN, infinite or "
        "out-of-range probability), naming its id and the reason. skip: leave such records out "
        "of every pass and list them in invalid_records-*.jsonl. Default: %(default)s.",
    )
    run = parser.add_argument_group("run")
    run.add_argument(
        "--output",
        default=DEFAULT_OUTPUT,
        help="Output directory: local, gs:// (pip install 'beam-labelissues[gcp]') or s3:// "
        "(pip install 'beam-labelissues[aws]'). Default: ./%(default)s. A run writes into "
        "a staging directory inside it and publishes when it finished, replacing only the files "
        "the earlier run's summary.json lists.",
    )
    _add_flag(
        run,
        "--overwrite",
        "Write into a non-empty --output that holds no earlier run of this tool: files named as "
        "this run's outputs are replaced there, no other file is touched. Without it such a "
        "directory is refused.",
    )
    _add_flag(
        run,
        "--write_scores",
        "Also write label_quality_scores-*.parquet: id, given_label, predicted_label, "
        "label_quality and is_label_issue for every example.",
    )
    run.add_argument(
        "--batch_size",
        type=_whole_number(1),
        help="Rows per batch, at least 1. Default: as many rows as fit in about "
        "4 MiB of pred_probs. Results never depend on it.",
    )
    run.add_argument(
        "--max_issues_per_worker",
        type=_whole_number(1),
        default=default("max_issues_per_worker"),
        help="The most issues one worker holds while ranking them (at least 1; about 100 bytes each). "
        "More issues are split into score ranges ranked on separate workers, one "
        "label_issues file per range; results never depend on it. Default: %(default)s.",
    )
    run.add_argument(
        "--human_review",
        help="A *_mturk.json human review of flagged examples (id = row index): the summary then "
        "says how many flagged examples the reviewers did not uphold. Default: the bundled MNIST "
        "review when running on the demo data. The report then shows how the reviewers judged the "
        "issues by rank, and each reviewed issue's votes.",
    )
    run.add_argument(
        "--class_names",
        help="A file naming the classes, one per line (line k names class k) or a JSON list. "
        "Names then appear in the printed summary, the report and as given_label_name / "
        "predicted_label_name columns of label_issues; Parquet labels given as names are "
        "mapped through it, and it fills a --pred_probs_columns template.",
    )
    _add_flag(
        run,
        "--no_report",
        "Do not write report.html (a self-contained HTML page: figures, and the most severe "
        "issues to sort and filter).",
    )
    _add_flag(run, "--quiet", "Print only warnings and the final summary.")
    _add_review_workflow_options(parser)
    return parser


# A share written as a plain decimal number in [0, 1] ("0.05", ".5", "1"): no sign,
# exponent, inf or nan, so a scheduler's template can check it with a regular expression.
_SHARE = re.compile(r"0+(\.[0-9]*)?|0*\.[0-9]+|0*1(\.0*)?")


def _share(text: str) -> float:
    if not _SHARE.fullmatch(text):
        raise argparse.ArgumentTypeError(f"expected a share between 0 and 1 such as 0.05, got {text!r}")
    return float(text)


def _add_review_workflow_options(parser: argparse.ArgumentParser, after_the_run: bool = False) -> None:
    """Options for the people who fix the labels: links, exports, and a gate for schedulers.

    ``after_the_run``: for the ``report`` subcommand, which has no pipeline to build.
    """
    review = parser.add_argument_group("review workflow")
    if not after_the_run:
        review.add_argument(
            "--example_uri_template",
            help="Where each example lives, with {id} where its id goes, such as "
            "'gs://bucket/images/{id}.jpg' or 'https://data.example.com/items/{id}' (only {id}; {{ and }} "
            "for literal braces). Adds a uri column to label_issues (and label_quality_scores); the "
            "report links each id to it and shows thumbnails of local image files.",
        )
    review.add_argument(
        "--export",
        action="append",
        metavar="labelstudio|csv",
        help="Also write the issues for a relabelling round: labelstudio = "
        f"{outputs.LABELSTUDIO_EXPORT_FILE} (Label Studio tasks, the predicted label as a "
        f"pre-annotation) and {outputs.LABELSTUDIO_CONFIG_FILE} (the labeling config to paste into "
        f"the project); csv = {outputs.CSV_EXPORT_FILE}. Repeat it or separate with commas.",
    )
    review.add_argument(
        "--max_issue_rate",
        type=_share,
        metavar="R",
        help="After writing everything, exit with code "
        f"{EXIT_ISSUE_RATE_EXCEEDED} when label issues are more than this share of the examples "
        "(0.05 = 5%%), so a scheduler can hold back a training run on such data.",
    )


def _check_review_workflow_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    try:
        args.export = exports.parse_export_formats(args.export)
    except ValueError as error:
        parser.error(str(error))


def build_report_parser() -> argparse.ArgumentParser:
    parser = _OneLineErrors(
        prog=f"{PROG} report",
        allow_abbrev=False,
        description="Rebuild report.html from the outputs of an earlier run; with --export and "
        "--max_issue_rate, also export the issues and gate on their share (for a job that was "
        "launched without waiting for it, such as a Flex Template launch).",
    )
    parser.add_argument("output_dir", help="The output directory of a finished run (holds summary.json).")
    parser.add_argument("--class_names", help="Class names file (one per line or a JSON list).")
    parser.add_argument("--human_review", help="A *_mturk.json human review to compare the issues with.")
    _add_review_workflow_options(parser, after_the_run=True)
    return parser


def parse_args(argv: Sequence[str]) -> Tuple[argparse.Namespace, List[str]]:
    """Splits the command line into our options and Beam's pipeline options."""
    parser = build_arg_parser()
    args, beam_args = parser.parse_known_args(argv)
    unknown = [a for a in beam_args if a.startswith("--") and not _is_beam_option(a)]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    _check_review_workflow_options(parser, args)
    return args, beam_args


def _is_beam_option(arg: str) -> bool:
    name = arg[2:].split("=", 1)[0]
    known = set(_JOB_SERVER_OPTIONS)
    for options_class in PipelineOptions.__subclasses__():
        _collect_option_names(options_class, known)
    return name in known


def _collect_option_names(options_class, names: set) -> None:
    parser = argparse.ArgumentParser(add_help=False)
    try:
        options_class._add_argparse_args(parser)
    except Exception:  # an options class that cannot describe itself adds nothing
        pass
    for action in parser._actions:
        for flag in action.option_strings:
            names.add(flag.lstrip("-"))
    for sub in options_class.__subclasses__():
        _collect_option_names(sub, names)


def pipeline_options(beam_args: List[str]) -> PipelineOptions:
    options = PipelineOptions(beam_args)
    standard = options.view_as(StandardOptions)
    if standard.runner is None:
        standard.runner = DEFAULT_RUNNER
    return options


def local_worker_args(beam_args: List[str], pred_probs_bytes: int, decode_threads: int = 0) -> List[str]:
    """Beam options for the local runner's workers when the user chose none: one worker
    process per core from ``MULTI_PROCESS_FROM_BYTES`` of predictions, counting a source's
    decoding threads as cores they use (Parquet: 100M x 10 on 2 cores took 30.8 s and
    1.2 GB in one process, 32.4 s and 3.3 GB in two)."""
    if any(arg.split("=", 1)[0] in _LOCAL_WORKER_OPTIONS for arg in beam_args):
        return []
    workers = (os.cpu_count() or 1) // (1 + decode_threads)
    if pred_probs_bytes < MULTI_PROCESS_FROM_BYTES or workers < 2:
        return []
    _LOG.info(
        "%.1f GB of predictions: running %d local worker processes (set --direct_num_workers to choose)",
        pred_probs_bytes / 1e9,
        workers,
    )
    return [f"--direct_num_workers={workers}", "--direct_running_mode=multi_processing"]


def runs_in_one_local_worker(options: PipelineOptions) -> bool:
    """True for the in-process runner with one worker, where spreading read tasks is moot."""
    runner = options.view_as(StandardOptions).runner
    workers = options.view_as(DirectOptions).direct_num_workers
    return runner in ("FnApiRunner", "DirectRunner", "BundleBasedDirectRunner") and workers == 1


# --- one run -----------------------------------------------------------------------


def _uses_demo(args: argparse.Namespace) -> bool:
    return args.input is None and args.labels_file is None and args.pred_probs_file is None


def open_inputs(args: argparse.Namespace) -> input_files.Inputs:
    """The inputs the command line names, or the bundled demo data when it names none."""
    if _uses_demo(args):
        _LOG.info("no input given: using the bundled MNIST demo data")
        labels_file, pred_probs_file = demo.DEMO_LABELS, demo.DEMO_PRED_PROBS
    else:
        labels_file, pred_probs_file = args.labels_file, args.pred_probs_file
    return input_files.open_inputs(
        labels_file=labels_file,
        pred_probs_file=pred_probs_file,
        parquet=args.input,
        label_column=args.label_column,
        pred_probs_column=args.pred_probs_column,
        pred_probs_columns=args.pred_probs_columns,
        id_column=args.id_column,
        num_classes=args.num_classes,
        batch_size=args.batch_size,
        class_names_file=args.class_names,
    )


def human_review_path(args: argparse.Namespace) -> Optional[str]:
    if args.human_review is not None:
        return args.human_review
    return demo.DEMO_HUMAN_REVIEW if _uses_demo(args) else None


def label_issues_options(args: argparse.Namespace, num_classes: int) -> LabelIssuesOptions:
    return LabelIssuesOptions(
        num_classes=num_classes,
        method=args.method,
        adjust_pred_probs=args.adjust_pred_probs,
        estimation_method=args.estimation_method,
        tolerance=args.tolerance,
        row_sum_tolerance=args.row_sum_tolerance,
        on_invalid=args.on_invalid,
        with_scores=args.write_scores,
        max_issues_per_worker=args.max_issues_per_worker,
        example_uri_template=args.example_uri_template,
        filter_by=args.filter_by,
        threshold_sample_fraction=args.threshold_sample_fraction,
        frac_noise=args.frac_noise,
        num_to_remove_per_class=args.num_to_remove_per_class,
        min_examples_per_class=args.min_examples_per_class,
        calibration_tie_break=args.calibration_tie_break,
    )


def run_options(args: argparse.Namespace, options: PipelineOptions) -> dict:
    """The command line's settings that summary.json records beside the transform's options."""
    recorded = {"runner": options.view_as(StandardOptions).runner}
    for name in ("labels_file", "pred_probs_file", "input", "label_column", "pred_probs_column",
                 "pred_probs_columns", "id_column", "num_classes", "batch_size", "class_names",
                 "human_review", "export", "max_issue_rate", "no_report", "overwrite"):
        value = getattr(args, name, None)
        if value is not None and value != []:
            recorded[name] = value
    return recorded


def build_pipeline(
    args: argparse.Namespace, beam_args: List[str], source_wrapper=None, output_dir: Optional[str] = None
) -> beam.Pipeline:
    """Checks the inputs and builds the pipeline; touches no output file.

    The pipeline writes into ``output_dir`` (default: ``--output``; the command line
    gives its staging directory). ``source_wrapper`` (a function of the source)
    lets a test driver wrap the reader.
    """
    return _build(args, beam_args, source_wrapper, output_dir)[0]


def _build(args, beam_args, source_wrapper, output_dir) -> Tuple[beam.Pipeline, input_files.Inputs]:
    inputs = open_inputs(args)
    options = pipeline_options(
        beam_args
        + local_worker_args(beam_args, inputs.pred_probs_bytes, inputs.source.decode_threads)
        + runners.flink_args(beam_args)
    )
    inputs.source.reshuffle = not runs_in_one_local_worker(options)
    try:
        settings = label_issues_options(args, inputs.num_classes)
    except ValueError as error:
        raise UsageError(str(error)) from error
    source = inputs.source if source_wrapper is None else source_wrapper(inputs.source)
    _LOG.info("reading %s", inputs.description)
    pipeline = beam.Pipeline(options=options)
    result = pipeline | "FindLabelIssues" >> FindLabelIssues(settings, source=source, class_names=inputs.class_names)
    result | "WriteLabelIssues" >> outputs.WriteLabelIssues(
        output_dir or args.output, run_options=run_options(args, options)
    )
    return pipeline, inputs


# --- what went wrong -------------------------------------------------------------------

# Errors a worker raises that the command line reports as they are (the runner
# may hand them back only as text).
_WORKER_ERRORS = {cls.__name__: cls for cls in (DuplicateIdError, InvalidRecordError, InputFileError)}


def _chain(error: Optional[BaseException]):
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


def _our_error(error: BaseException) -> Optional[LabelIssuesError]:
    """Finds an error of ours inside a runner's wrapped exception (as an object or as text)."""
    for link in _chain(error):
        if isinstance(link, tuple(_WORKER_ERRORS.values())):
            return type(link)(str(link).split(" [while running", 1)[0])
    for link in _chain(error):
        text = str(link)
        for name, cls in _WORKER_ERRORS.items():
            marker = f"{name}: "
            if marker in text:
                message = text.split(marker, 1)[1].splitlines()[0]
                return cls(message.split(" [while running", 1)[0].strip().strip("'\""))
    return None


def _no_space(error: BaseException) -> Optional[BaseException]:
    """The link of ``error``'s chain that says the disk is full, if any."""
    for link in _chain(error):
        if isinstance(link, OSError) and link.errno == errno.ENOSPC:
            return link
        text = str(link)
        if "No space left on device" in text or "[Errno 28]" in text:
            return link
    return None


def _innermost_message(error: BaseException) -> str:
    """One line saying what failed: the innermost exception, as a runner's text or as an object."""
    links = list(_chain(error))
    innermost = links[-1]
    lines = [line.strip() for line in str(innermost).splitlines() if line.strip()]
    if not lines:
        return type(innermost).__name__
    named = [line for line in lines if line.split(":", 1)[0].replace(".", "").isidentifier() and ":" in line]
    line = (named or lines)[-1]
    if not named:
        line = f"{type(innermost).__name__}: {line}"
    line = line.split(" [while running", 1)[0].strip()
    return line if len(line) <= 500 else line[:497] + "..."


def _human_bytes(size: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{int(size):,} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


# Upper bounds of the bytes per row of each output file (Parquet, before compression).
_ISSUE_ROW_BYTES = 48
_SCORE_ROW_BYTES = 48
_REPORT_BYTES = 2 << 20


def estimated_output_bytes(num_rows: int, with_scores: bool) -> int:
    """About the most this run's outputs take: every row an issue, plus the scores and the report."""
    return num_rows * (_ISSUE_ROW_BYTES + (_SCORE_ROW_BYTES if with_scores else 0)) + _REPORT_BYTES


def _no_space_error(link: BaseException, output: OutputDirectory, num_rows: int, with_scores: bool) -> RunError:
    where = getattr(link, "filename", None) or output.path
    free = ""
    if paths.is_local(where):
        probe = where
        while probe and not os.path.exists(probe):
            probe = os.path.dirname(probe)
        try:
            free = f"{_human_bytes(shutil.disk_usage(probe or '.').free)} free there; "
        except OSError:
            pass
    need = _human_bytes(estimated_output_bytes(num_rows, with_scores))
    return RunError(
        f"no space left on device writing {where}: {free}this run's outputs take up to about {need} "
        f"({num_rows:,} rows{', with --write_scores' if with_scores else ''}); nothing was published "
        f"and {output.path} is as it was"
    )


def _run_failure(error: BaseException, output: OutputDirectory, inputs: input_files.Inputs, args) -> LabelIssuesError:
    """What to tell the user about an exception out of the run, as one of our errors."""
    if isinstance(error, LabelIssuesError):
        return error
    ours = _our_error(error)
    if ours is not None:
        return ours
    full = _no_space(error)
    if full is not None:
        return _no_space_error(full, output, inputs.num_rows, args.write_scores)
    return RunError(f"the run failed: {_innermost_message(error)}; nothing was published")


# --- one run -----------------------------------------------------------------------


class RunState:
    """What an interrupt needs to know of the run under way: the output directory it holds."""

    def __init__(self):
        self.output: Optional[OutputDirectory] = None
        self.interrupted: Optional[threading.Event] = None  # the interrupt handler's

    def on_interrupt(self, signum: int) -> str:
        """Cleans up after an interrupt (in the interrupt handler's thread); says what became of the outputs."""
        output = self.output
        if output is None:
            return "nothing was written"
        with output.publishing:  # a publish under way completes first
            published = output.published
            output.close()
        if published:
            return f"the run had finished; its outputs are published in {output.path}"
        return f"nothing was published; {output.path} is as it was"


def _load_review(args: argparse.Namespace) -> Optional[Dict[int, dict]]:
    path = human_review_path(args)
    if path is None:
        return None
    try:
        return load_human_review(path)
    except ValueError as error:
        raise UsageError(str(error)) from error


def submit_only(args, beam_args, source_wrapper) -> Optional[str]:
    """Builds the pipeline and, when it only writes or translates the job (``runners.submits_only``),
    submits it and returns what to print; None when the run is to happen here.

    Nothing waits for such a job and no one publishes after it, so it writes straight into
    ``--output``, summary.json last: the directory must be new, empty, or an earlier run's.
    """
    note = runners.submits_only(pipeline_options(beam_args), args.output)
    if note is None:  # decided by two switches: build the pipeline once, in run_to_publish
        return None
    pipeline = build_pipeline(args, beam_args, source_wrapper)
    if not pipeline.options.view_as(TestOptions).dry_run:  # a dry run writes nothing, ever
        OutputDirectory(args.output, overwrite=args.overwrite).check_writable_in_place()
    try:
        with runners.local_worker_log_levels(pipeline.options):
            pipeline.run()
    except Exception as error:  # translation or submission failed
        raise RunError(f"the job could not be written: {_innermost_message(error)}") from error
    return note


def run_to_publish(args: argparse.Namespace, beam_args: List[str], source_wrapper=None, state: Optional[RunState] = None):
    """Checks everything, runs the pipeline into a staging directory, writes the report and
    the exports there and publishes.

    Returns (summary, the most severe issues, the human review's result or None,
    report.html's path or None). Raises one of our errors; on any failure the
    output directory is left as it was.
    """
    state = state or RunState()
    review = _load_review(args)
    output = OutputDirectory(args.output, overwrite=args.overwrite)
    pipeline, inputs = _build(args, beam_args, source_wrapper, output.staging)
    state.output = output
    output.open()  # only once the inputs are checked: a refused input writes nothing
    with output.held():
        started = time.monotonic()
        try:
            with runners.local_worker_log_levels(pipeline.options):
                pipeline.run().wait_until_finish()
            _LOG.info("pipeline finished in %.1f s", time.monotonic() - started)
            write_exports(output.staging, args.export)
            summary, top, report_file = report_outputs(
                output.staging, not args.no_report, human_review=human_review_path(args)
            )
            review_result = None
            if review is not None:
                flagged = outputs.read_label_issues(output.staging, summary, columns=["id"]).column("id").to_pylist()
                review_result = review_of_issues(flagged, review)
            summary = output.publish()
        except Exception as error:
            output.abandon()  # first: what the message says about free space is then true
            raise _run_failure(error, output, inputs, args) from error
    report_path = outputs.output_path(args.output, outputs.REPORT_FILE) if report_file else None
    return summary, top, review_result, report_path


# --- after the run -----------------------------------------------------------------


def print_summary(
    output_dir: str,
    summary: outputs.Summary,
    top: List[dict],
    review: Optional[Dict[str, int]],
    review_path: Optional[str],
    report_path: Optional[str],
    out=None,
) -> None:
    out = out or sys.stdout
    n = summary.num_examples
    share = summary.num_label_issues / n if n else 0.0
    print(f"\nExamples read:        {n:,} ({summary.num_classes} classes)", file=out)
    if summary.num_invalid_records:
        print(f"Invalid records:      {summary.num_invalid_records:,} (left out)", file=out)
    thresholds = ", ".join(f"{t:.4f}" for t in summary.confident_thresholds[:20])
    more = " ..." if summary.num_classes > 20 else ""
    print(f"Confident thresholds: [{thresholds}{more}]", file=out)
    if summary.filter_by:
        print(f"Method:               filter_by {summary.filter_by} (cleanlab.filter.find_label_issues)", file=out)
        print(f"Rows selected:        {summary.num_issues_estimated:,}", file=out)
    else:
        print(f"Issues estimated:     {summary.num_issues_estimated:,}", file=out)
    print(f"Label issues found:   {summary.num_label_issues:,} ({share:.2%} of examples)", file=out)
    if summary.overall_label_health_score is not None:
        print(f"Label health score:   {summary.overall_label_health_score:.4f} "
              "(1 - the share of examples confident learning flags)", file=out)
    if top:
        print("\nMost severe issues:", file=out)
        print(f"  {'rank':>4}  {'id':>10}  {'given':>14}  {'predicted':>14}  {'label_quality':>13}", file=out)
        names = summary.class_names
        for row in top[:_PRINTED_ISSUES]:
            given, predicted = row["given_label"], row["predicted_label"]
            if names:
                given, predicted = f"{names[given]} ({given})", f"{names[predicted]} ({predicted})"
            print(
                f"  {row['rank']:>4}  {row['id']!s:>10}  {given!s:>14}  "
                f"{predicted!s:>14}  {row['label_quality']:>13.6g}",
                file=out,
            )
    if review is not None:
        print(
            f"\nHuman review ({os.path.basename(review_path)}): {review['reviewed']} of the "
            f"{summary.num_label_issues} flagged examples were reviewed; the reviewers did not uphold the given "
            f"label for {review['not_upheld']} of them.",
            file=out,
        )
    if n == 0:
        print("\nWARNING: the input has no valid examples; wrote empty outputs.", file=out)
    print(f"\nOutputs in {output_dir}:", file=out)
    for name in summary.output_files + [outputs.SUMMARY_FILE]:
        print(f"  {outputs.output_path(output_dir, name)}", file=out)
    if report_path:
        print(f"  {report_path}", file=out)


def report_outputs(output_dir: str, with_report: bool, class_names=None, human_review: Optional[str] = None):
    """Reads the finished run's outputs once; writes report.html when asked.

    Returns (summary, the most severe issues, report.html's path or None). report.html
    is added to the run's summary.json, so it is published and replaced with the run.
    """
    if not with_report:
        summary = outputs.read_summary(output_dir)
        return summary, outputs.read_top_issues(output_dir, summary, _PRINTED_ISSUES), None
    from beam_labelissues import report

    data = report.ReportData.read(output_dir, class_names, human_review)
    path = report.write_report_page(data)
    summary = outputs.record_report(output_dir, data.summary)
    return summary, data.issues.top_rows, path


def write_exports(output_dir: str, formats: Sequence[str]) -> None:
    """Writes the --export files after the run and lists them in summary.json."""
    if formats:
        summary = exports.write_exports(output_dir, outputs.read_summary(output_dir), formats)
        _LOG.info("exported the issues: %s", ", ".join(summary.export_files))


def issue_rate_exceeded(summary: outputs.Summary, max_issue_rate: Optional[float], out=None) -> bool:
    """True, after saying so on ``out`` (stderr), when issues exceed --max_issue_rate of the examples."""
    if max_issue_rate is None or not summary.num_examples:
        return False
    rate = summary.num_label_issues / summary.num_examples
    if rate <= max_issue_rate:
        return False
    print(
        f"Label issues are {rate:.2%} of the examples ({summary.num_label_issues:,} of "
        f"{summary.num_examples:,}), more than --max_issue_rate {max_issue_rate:.2%}: "
        f"exit code {EXIT_ISSUE_RATE_EXCEEDED}.",
        file=out or sys.stderr,
    )
    return True


def report_main(argv: Sequence[str]) -> int:
    parser = build_report_parser()
    args = parser.parse_args(argv)
    _check_review_workflow_options(parser, args)
    try:
        names = None if args.class_names is None else load_class_names(args.class_names)
        write_exports(args.output_dir, args.export)
        summary, _, path = report_outputs(args.output_dir, True, names, args.human_review)
    except (LabelIssuesError, ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as error:
        print(f"error: cannot write the report into {args.output_dir}: {error}", file=sys.stderr)
        return EXIT_RUN_FAILED
    if path is None:
        return EXIT_RUN_FAILED
    print(path)
    if issue_rate_exceeded(summary, args.max_issue_rate):
        return EXIT_ISSUE_RATE_EXCEEDED
    return EXIT_OK


def _is_logging_default_handler(handler: logging.Handler) -> bool:
    """The stderr handler ``logging`` gives the root logger when a message is logged
    before anything configured logging (``logging.basicConfig()`` with no arguments)."""
    formatter = handler.formatter
    return (
        type(handler) is logging.StreamHandler
        and handler.stream is sys.stderr
        and formatter is not None
        and formatter._fmt == logging.BASIC_FORMAT
    )


def configure_logging(level: int) -> None:
    """The command line's log lines on stderr, at ``level`` and above.

    Importing Beam without apache-beam[gcp] logs a warning at once, which gives the root
    logger logging's default handler first, and ``basicConfig`` then does nothing: the
    command line's INFO lines never showed. That default handler is replaced; handlers
    someone else installed (an application calling ``main``, pytest) are kept, and the
    level applies to them.
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        if _is_logging_default_handler(handler):
            root.removeHandler(handler)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    root.setLevel(level)


class _DropTracebacks(logging.Filter):
    """Beam and its workers log the traceback of any failure before the runner
    re-raises it; the one ``error:`` line printed at the end says what failed.
    Records that carry a traceback are dropped (``BEAM_LABELISSUES_TRACEBACKS=1`` keeps them)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info:
            return False
        return "(most recent call last)" not in record.getMessage()


def main(argv: Optional[Sequence[str]] = None, source_wrapper=None, state: Optional[RunState] = None) -> int:
    """Runs the command line; returns the exit code (``EXIT_CODES``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["report"]:
        return report_main(argv[1:])
    if argv[:1] == [FLINK_JOB_SERVER_COMMAND]:
        return flink.main(argv[1:], prog=f"{PROG} {FLINK_JOB_SERVER_COMMAND}")
    try:
        args, beam_args = parse_args(argv)
    except SystemExit as stop:  # argparse: a usage error (2), or --help / --version (0)
        return stop.code if isinstance(stop.code, int) else EXIT_USAGE
    configure_logging(logging.WARNING if args.quiet else logging.INFO)
    if not args.quiet:
        logging.getLogger("apache_beam").setLevel(logging.WARNING)
    if os.environ.get(TRACEBACKS_ENV) != "1":
        for handler in logging.getLogger().handlers:
            handler.addFilter(_DropTracebacks())
    try:
        check_output_path(args.output)  # an unusable --output is refused before anything else
        note = submit_only(args, beam_args, source_wrapper)
        if note is not None:
            print(note)
            return EXIT_OK
        summary, top, review, report_path = run_to_publish(args, beam_args, source_wrapper, state)
    except LabelIssuesError as error:
        wait_if_interrupted(state and state.interrupted)  # the run failed because it was interrupted
        print(f"error: {error}", file=sys.stderr)
        return exit_code_of(error)
    except Exception as error:  # a failure we did not foresee: still one line, the details in the debug log
        wait_if_interrupted(state and state.interrupted)
        _LOG.debug("unexpected failure", exc_info=True)
        print(f"error: unexpected failure: {_innermost_message(error)}", file=sys.stderr)
        return EXIT_RUN_FAILED
    wait_if_interrupted(state and state.interrupted)
    print_summary(args.output, summary, top, review, human_review_path(args), report_path)
    if summary.num_examples == 0:
        _LOG.warning("the input has no valid examples: wrote an empty label_issues file")
    if issue_rate_exceeded(summary, args.max_issue_rate):
        return EXIT_ISSUE_RATE_EXCEEDED
    return EXIT_OK


def use_system_allocator() -> None:
    """Arrow allocations of this process, and of the local worker processes it starts,
    from the C library's allocator, unless ``ARROW_DEFAULT_MEMORY_POOL`` says otherwise.

    Arrow's own pools keep the memory of freed buffers (decoded row groups, the output
    tables): the peak of 10M x 10 .npy falls from 387 to 330 MB, 1M x 10 Parquet
    from 357 to 312 MB, at the same speed. The command is the application here, so
    it chooses; the library leaves the choice to its caller.
    """
    if os.environ.get(ARROW_POOL_ENV):
        return
    os.environ[ARROW_POOL_ENV] = "system"  # the local worker processes start with it
    pa.set_memory_pool(pa.system_memory_pool())


def run_and_exit(argv: Optional[Sequence[str]] = None, source_wrapper=None) -> None:
    """The console entry point: ``main`` with interrupts handled, then a fast exit.

    SIGINT, SIGTERM and SIGHUP end the run at once: the processes it started are
    killed, its staging directory removed, one line printed (``processes``).
    ``source_wrapper`` is ``main``'s test seam.
    Tearing down an interpreter that loaded Beam takes about half a second, and
    everything is written by then: run the exit handlers (Beam's stop job servers
    such as Flink's), flush, and leave without the teardown.
    """
    use_system_allocator()
    state = RunState()
    state.interrupted = InterruptHandler(state.on_interrupt).install().interrupted
    exit_code = main(argv, source_wrapper=source_wrapper, state=state)
    wait_if_interrupted(state.interrupted)
    atexit._run_exitfuncs()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(exit_code)
