"""The command line: ``beam-labelissues``, ``python -m beam_labelissues`` and the Flex Template.

One run flows down once: parse the options -> open the inputs (``io.inputs``) ->
``FindLabelIssues`` -> ``WriteLabelIssues`` (``io.outputs``) -> run -> read the
outputs back once (``report.ReportData``) -> write report.html and print the
summary. With no input options it runs on the bundled MNIST demo data. Every
Apache Beam pipeline option passes through (``--runner``, ``--direct_num_workers``, ...).

When the run only submits or describes a job (``--template_location``, as the
Dataflow Flex Template launcher passes, or ``--dry_run``), the CLI builds and
submits the pipeline and exits 0 without touching the output directory: the job
writes it later. ``--runner FlinkRunner`` without ``--flink_job_server_jar`` gets
a job server jar from ``beam_labelissues.flink``.
"""

from __future__ import annotations

import argparse
import atexit
import logging
import os
import re
import sys
import time
from typing import Callable, List, Optional, Sequence, Tuple

import apache_beam as beam
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions

from beam_labelissues import demo, flink, kernels, runners
from beam_labelissues._version import __version__
from beam_labelissues.io import exports
from beam_labelissues.io import inputs as input_files
from beam_labelissues.io import locations, outputs
from beam_labelissues.io.class_names import load_class_names
from beam_labelissues.io.human_review import load_human_review, review_of_issues
from beam_labelissues.options import ON_INVALID_CHOICES, LabelIssuesOptions, default
from beam_labelissues.transforms import FindLabelIssues
from beam_labelissues.validation import LabelIssuesError, UsageError, error_inside

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

# --- exit codes of the review workflow ---------------------------------------------------
# The run finished and wrote everything, but label issues are a larger share of the
# examples than --max_issue_rate allows: a scheduler (an Airflow task, say) can stop the
# training run that would follow.
EXIT_ISSUE_RATE_EXCEEDED = 4
_LOG = logging.getLogger("beam_labelissues")


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


def _add_flag(group, name: str, help_text: str) -> None:
    """A switch: ``--name`` alone, or ``--name=true|false`` as a Flex Template passes it."""
    group.add_argument(
        name, nargs="?", const=True, default=False, type=_flag_value, metavar="true|false", help=help_text
    )


def build_arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
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
            "label_quality; rank 0 is the most severe), summary.json (written last: its presence "
            "means the run finished), label_quality_scores-*.parquet with --write_scores, "
            "invalid_records-*.jsonl with --on_invalid skip, and report.html (plots, unless "
            "--no_report). Outputs of an earlier run in the same directory are removed first. "
            "Runners: --runner FlinkRunner without --flink_job_server_jar uses the jar of "
            f"'{PROG} {FLINK_JOB_SERVER_COMMAND}' (built with Maven once, then cached), with --flink_version "
            f"{flink.FLINK_VERSION} and, unless you give --environment_type, the LOOPBACK "
            "environment (workers run in this process; no Docker needed). With --template_location "
            "(as the Dataflow Flex Template launcher passes) or --dry_run=True the job is only "
            "written or translated: nothing runs here, --output is left alone and the exit code "
            f"is 0. Subcommands: '{PROG} report OUTDIR' rebuilds report.html from an earlier "
            f"run; '{PROG} {FLINK_JOB_SERVER_COMMAND}' prints the path of the Flink job server jar."
        ),
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"{PROG} {__version__} (apache-beam {flink.beam_version()})",
        help="Print the version of this package and of Apache Beam, and exit.",
    )
    npy = parser.add_argument_group("input (.npy files, as cleanlab's labels_file / pred_probs_file)")
    npy.add_argument(
        "--labels_file",
        help="A .npy file of given labels: 1-D, any integer dtype, values in [0, K). "
        "The example id is the row index. Local path, gs:// or s3://.",
    )
    npy.add_argument(
        "--pred_probs_file",
        help="A .npy file of predicted probabilities, N x K, float16/32/64, same N as --labels_file "
        "(ideally out-of-sample, e.g. cross-validated).",
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
        "--tolerance",
        type=_non_negative_decimal,
        default=default("tolerance"),
        help="A non-negative number such as 1e-4: probabilities within this distance of [0, 1] "
        "are valid and used as given (real "
        "predictions carry rounding such as 1.00001); further out, the record is invalid. "
        "confidence_weighted_entropy clips them into [0, 1]. Default: %(default)s.",
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
        "(pip install 'beam-labelissues[aws]'). Default: ./%(default)s.",
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
    parser = argparse.ArgumentParser(
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


def local_worker_args(beam_args: List[str], pred_probs_bytes: int) -> List[str]:
    """Beam options for the local runner's workers when the user chose none."""
    if any(arg.split("=", 1)[0] in _LOCAL_WORKER_OPTIONS for arg in beam_args):
        return []
    cores = os.cpu_count() or 1
    if pred_probs_bytes < MULTI_PROCESS_FROM_BYTES or cores < 2:
        return []
    _LOG.info(
        "%.1f GB of predictions: running %d local worker processes (set --direct_num_workers to choose)",
        pred_probs_bytes / 1e9,
        cores,
    )
    return [f"--direct_num_workers={cores}", "--direct_running_mode=multi_processing"]


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
        on_invalid=args.on_invalid,
        with_scores=args.write_scores,
        max_issues_per_worker=args.max_issues_per_worker,
        example_uri_template=args.example_uri_template,
    )


def run_options(args: argparse.Namespace, options: PipelineOptions) -> dict:
    """The command line's settings that summary.json records beside the transform's options."""
    recorded = {"runner": options.view_as(StandardOptions).runner}
    for name in ("labels_file", "pred_probs_file", "input", "label_column", "pred_probs_column",
                 "pred_probs_columns", "id_column", "num_classes", "batch_size", "class_names",
                 "human_review", "export", "max_issue_rate", "no_report"):
        value = getattr(args, name, None)
        if value is not None and value != []:
            recorded[name] = value
    return recorded


def build_pipeline(args: argparse.Namespace, beam_args: List[str], source_wrapper=None) -> beam.Pipeline:
    """Checks the inputs and builds the pipeline; touches no output file.

    ``source_wrapper`` (a function of the source) lets a test driver wrap the reader.
    """
    locations.check_output_location(args.output)
    inputs = open_inputs(args)
    options = pipeline_options(
        beam_args + local_worker_args(beam_args, inputs.pred_probs_bytes) + runners.flink_args(beam_args)
    )
    inputs.source.reshuffle = not runs_in_one_local_worker(options)
    try:
        class_names = inputs.class_names
        settings = label_issues_options(args, inputs.num_classes)
    except ValueError as error:
        raise UsageError(str(error)) from error
    source = inputs.source if source_wrapper is None else source_wrapper(inputs.source)
    _LOG.info("reading %s", inputs.description)
    pipeline = beam.Pipeline(options=options)
    result = pipeline | "FindLabelIssues" >> FindLabelIssues(settings, source=source, class_names=class_names)
    result | "WriteLabelIssues" >> outputs.WriteLabelIssues(args.output, run_options=run_options(args, options))
    return pipeline


def run_pipeline(args: argparse.Namespace, beam_args: List[str], source_wrapper=None) -> Optional[str]:
    """Runs the pipeline to completion and returns None.

    When the run only writes or translates the job (``runners.submits_only``), nothing runs here:
    the output directory is neither touched nor waited for, and the return value says so.
    """
    pipeline = build_pipeline(args, beam_args, source_wrapper)
    note = runners.submits_only(pipeline.options, args.output)
    if note is None:
        locations.prepare_output_dir(args.output)
        outputs.remove_previous_outputs(args.output)
    started = time.monotonic()
    try:
        with runners.local_worker_log_levels(pipeline.options):
            result = pipeline.run()
            if note is None:
                result.wait_until_finish()
    except Exception as error:  # Beam wraps worker errors; surface ours plainly
        ours = error_inside(error)
        if ours is None:
            raise
        raise ours from error
    if note is not None:
        return note
    _LOG.info("pipeline finished in %.1f s", time.monotonic() - started)
    return None


# --- after the run -----------------------------------------------------------------


def print_summary(
    output_dir: str,
    summary: outputs.Summary,
    top: List[dict],
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
    print(f"Issues estimated:     {summary.num_issues_estimated:,}", file=out)
    print(f"Label issues found:   {summary.num_label_issues:,} ({share:.2%} of examples)", file=out)
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
    if review_path:
        flagged = outputs.read_label_issues(output_dir, summary, columns=["id"]).column("id").to_pylist()
        review = review_of_issues(flagged, load_human_review(review_path))
        print(
            f"\nHuman review ({os.path.basename(review_path)}): {review['reviewed']} of the "
            f"{len(flagged)} flagged examples were reviewed; the reviewers did not uphold the given "
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

    Returns (summary, the most severe issues, report.html's path or None).
    """
    if not with_report:
        summary = outputs.read_summary(output_dir)
        return summary, outputs.read_top_issues(output_dir, summary, _PRINTED_ISSUES), None
    from beam_labelissues import report

    data = report.ReportData.read(output_dir, class_names, human_review)
    return data.summary, data.issues.top_rows, report.write_report_page(data)


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
        return 2
    if path is None:
        return 1
    print(path)
    if issue_rate_exceeded(summary, args.max_issue_rate):
        return EXIT_ISSUE_RATE_EXCEEDED
    return 0


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


class _DropWorkerTracebacksOfInputErrors(logging.Filter):
    """Beam's workers log the traceback of any failure before the runner re-raises it;
    for a bad input record the one-line message printed at the end says it all."""

    _MARKERS = ("InvalidRecordError", "InputFileError")

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if record.exc_info:
            text += logging.Formatter().formatException(record.exc_info)
        return not any(marker in text for marker in self._MARKERS)


def main(argv: Optional[Sequence[str]] = None, source_wrapper=None) -> int:
    """Runs the command line; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["report"]:
        return report_main(argv[1:])
    if argv[:1] == [FLINK_JOB_SERVER_COMMAND]:
        return flink.main(argv[1:], prog=f"{PROG} {FLINK_JOB_SERVER_COMMAND}")
    try:
        args, beam_args = parse_args(argv)
    except SystemExit as stop:  # argparse: a usage error (2), or --help / --version (0)
        return stop.code if isinstance(stop.code, int) else 2
    configure_logging(logging.WARNING if args.quiet else logging.INFO)
    if not args.quiet:
        logging.getLogger("apache_beam").setLevel(logging.WARNING)
    for handler in logging.getLogger().handlers:
        handler.addFilter(_DropWorkerTracebacksOfInputErrors())
    try:
        note = run_pipeline(args, beam_args, source_wrapper)
        if note is not None:
            print(note)
            return 0
        write_exports(args.output, args.export)
        review_path = human_review_path(args)
        summary, top, report_path = report_outputs(args.output, not args.no_report, human_review=review_path)
        print_summary(args.output, summary, top, review_path, report_path)
    except LabelIssuesError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if summary.num_examples == 0:
        _LOG.warning("the input has no valid examples: wrote an empty label_issues file")
    if issue_rate_exceeded(summary, args.max_issue_rate):
        return EXIT_ISSUE_RATE_EXCEEDED
    return 0


def run_and_exit(argv: Optional[Sequence[str]] = None) -> None:
    """The console entry point: ``main``, then a fast exit.

    Tearing down an interpreter that loaded Beam takes about half a second, and
    everything is written by then: run the exit handlers (Beam's stop job servers
    such as Flink's), flush, and leave without the teardown.
    """
    exit_code = main(argv)
    atexit._run_exitfuncs()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(exit_code)
