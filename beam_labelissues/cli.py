"""The command line: ``beam-labelissues``, ``python -m beam_labelissues`` and the Flex Template.

One run flows down once: parse the options -> open the inputs (``io.inputs``) ->
``FindLabelIssues`` -> ``WriteLabelIssues`` (``io.outputs``) -> run -> read the
outputs back once (``report.ReportData``) -> write report.html and print the
summary. With no input options it runs on the bundled MNIST demo data. Every
Apache Beam pipeline option passes through (``--runner``, ``--direct_num_workers``, ...).
"""

from __future__ import annotations

import argparse
import atexit
import logging
import os
import sys
import time
from typing import List, Optional, Sequence, Tuple

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions, TestOptions

from beam_labelissues import confident_joint, demo, kernels
from beam_labelissues.io import inputs as input_files
from beam_labelissues.io import outputs
from beam_labelissues.io.class_names import load_class_names
from beam_labelissues.io.human_review import load_human_review, review_of_issues
from beam_labelissues.options import ON_INVALID_CHOICES, LabelIssuesOptions, default
from beam_labelissues.transforms import FindLabelIssues
from beam_labelissues.validation import LabelIssuesError, UsageError, error_inside

PROG = "beam-labelissues"
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
_LOG = logging.getLogger("beam_labelissues")


# --- the options -------------------------------------------------------------------


def _flag_value(text: str) -> bool:
    value = text.strip().lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no", ""):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _class_counts(text: str) -> Tuple[int, ...]:
    """``3,0,5`` -> (3, 0, 5): one count per class (checked against K once it is known)."""
    try:
        counts = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if any(count < 0 for count in counts):
        raise argparse.ArgumentTypeError(f"counts must be >= 0, got {text!r}")
    return counts


def _add_flag(group, name: str, help_text: str) -> None:
    """A switch: ``--name`` alone, or ``--name=true|false`` as a Flex Template passes it."""
    group.add_argument(
        name, nargs="?", const=True, default=False, type=_flag_value, metavar="true|false", help=help_text
    )


def build_arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Find label issues (examples whose given label is likely wrong) with confident "
            "learning, as cleanlab's find_label_issues_batched does, on any Beam runner. "
            "With no input options it runs on the bundled MNIST demo data. Any option not "
            "listed here is passed to Apache Beam as a pipeline option (for example --runner, "
            "--direct_num_workers, --direct_running_mode, --temp_location); the default runner "
            f"is {DEFAULT_RUNNER}, Beam's in-process runner."
        ),
        epilog=(
            "Outputs in --output: label_issues-*.parquet (rank, id, given_label, predicted_label, "
            "label_quality; rank 0 is the most severe), summary.json (written last: its presence "
            "means the run finished), label_quality_scores-*.parquet with --write_scores, "
            "invalid_records-*.jsonl with --on_invalid skip, and report.html (plots, unless "
            "--no_report). Outputs of an earlier run in the same directory are removed first. "
            f"'{PROG} report OUTDIR' rebuilds report.html from an earlier run."
        ),
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
        help="Parquet files to read, a path or a glob such as 'gs://bucket/preds/*.parquet' "
        "(local, gs:// or s3://). Files are read in sorted-name order, row groups in parallel.",
    )
    parquet.add_argument(
        "--label_column",
        help="The column of given labels: any integer type, values in [0, K). "
        f"Default: {input_files.DEFAULT_LABEL_COLUMN}.",
    )
    parquet.add_argument(
        "--pred_probs_column",
        help="The column of predicted probabilities: a list, large_list or fixed_size_list of "
        f"float16/32/64, one value per class. Default: {input_files.DEFAULT_PRED_PROBS_COLUMN}.",
    )
    parquet.add_argument(
        "--pred_probs_columns",
        help="Instead of --pred_probs_column: a glob over column names with one float column per "
        "class, such as 'p_*'. Class order follows the number each name ends with (p_2 before "
        "p_10); the numbers must be consecutive.",
    )
    parquet.add_argument(
        "--id_column",
        help="A column of example ids (any integer or string type), carried to the outputs "
        "unchanged. Default: the row index over the files in sorted-name order.",
    )
    parquet.add_argument(
        "--num_classes",
        type=int,
        help="The number of classes K. Default: the number of columns of pred_probs (.npy), "
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
        type=float,
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
        type=int,
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
        type=float,
        default=default("tolerance"),
        help="Probabilities within this distance of [0, 1] are valid and used as given (real "
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
        help="Output directory (local, gs:// or s3://). Default: ./%(default)s.",
    )
    _add_flag(
        run,
        "--write_scores",
        "Also write label_quality_scores-*.parquet: id, given_label, predicted_label, "
        "label_quality and is_label_issue for every example.",
    )
    run.add_argument(
        "--batch_size",
        type=int,
        help="Rows per batch. Default: as many rows as fit in about "
        "4 MiB of pred_probs. Results never depend on it.",
    )
    run.add_argument(
        "--max_issues_per_worker",
        type=int,
        default=default("max_issues_per_worker"),
        help="The most issues one worker holds while ranking them (about 100 bytes each). "
        "More issues are split into score ranges ranked on separate workers, one "
        "label_issues file per range; results never depend on it. Default: %(default)s.",
    )
    run.add_argument(
        "--human_review",
        help="A *_mturk.json human review of flagged examples (id = row index): the summary then "
        "says how many flagged examples the reviewers did not uphold. Default: the bundled MNIST "
        "review when running on the demo data.",
    )
    run.add_argument(
        "--class_names",
        help="A file naming the classes, one per line (line k names class k) or a JSON list. "
        "Names then appear in the printed summary, the report and as given_label_name / "
        "predicted_label_name columns of label_issues.",
    )
    _add_flag(
        run,
        "--no_report",
        "Do not write report.html (an HTML summary with plots; needs matplotlib, "
        "pip install 'beam-labelissues[report]').",
    )
    _add_flag(run, "--quiet", "Print only warnings and the final summary.")
    return parser


def build_report_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"{PROG} report",
        description="Rebuild report.html from the outputs of an earlier run.",
    )
    parser.add_argument("output_dir", help="The output directory of a finished run (holds summary.json).")
    parser.add_argument("--class_names", help="Class names file (one per line or a JSON list).")
    return parser


def parse_args(argv: Sequence[str]) -> Tuple[argparse.Namespace, List[str]]:
    """Splits the command line into our options and Beam's pipeline options."""
    parser = build_arg_parser()
    args, beam_args = parser.parse_known_args(argv)
    unknown = [a for a in beam_args if a.startswith("--") and not _is_beam_option(a)]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
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
        filter_by=args.filter_by,
        frac_noise=args.frac_noise,
        num_to_remove_per_class=args.num_to_remove_per_class,
        min_examples_per_class=args.min_examples_per_class,
        calibration_tie_break=args.calibration_tie_break,
    )


def build_pipeline(args: argparse.Namespace, beam_args: List[str], source_wrapper=None) -> beam.Pipeline:
    """Checks the inputs and builds the pipeline; touches no output file.

    ``source_wrapper`` (a function of the source) lets a test driver wrap the reader.
    """
    inputs = open_inputs(args)
    options = pipeline_options(beam_args + local_worker_args(beam_args, inputs.pred_probs_bytes))
    inputs.source.reshuffle = not runs_in_one_local_worker(options)
    try:
        class_names = None if args.class_names is None else load_class_names(args.class_names, inputs.num_classes)
        settings = label_issues_options(args, inputs.num_classes)
    except ValueError as error:
        raise UsageError(str(error)) from error
    source = inputs.source if source_wrapper is None else source_wrapper(inputs.source)
    _LOG.info("reading %s", inputs.description)
    pipeline = beam.Pipeline(options=options)
    result = pipeline | "FindLabelIssues" >> FindLabelIssues(settings, source=source, class_names=class_names)
    result | "WriteLabelIssues" >> outputs.WriteLabelIssues(args.output)
    return pipeline


def run_pipeline(args: argparse.Namespace, beam_args: List[str], source_wrapper=None) -> bool:
    """Runs the pipeline to completion; False for a dry run (nothing was run or submitted)."""
    pipeline = build_pipeline(args, beam_args, source_wrapper)
    dry_run = pipeline.options.view_as(TestOptions).dry_run
    if not dry_run:
        if not FileSystems.exists(args.output):
            FileSystems.mkdirs(args.output)
        outputs.remove_previous_outputs(args.output)
    started = time.monotonic()
    try:
        pipeline.run().wait_until_finish()
    except Exception as error:  # Beam wraps worker errors; surface ours plainly
        ours = error_inside(error)
        if ours is None:
            raise
        raise ours from error
    if dry_run:
        runner = pipeline.options.view_as(StandardOptions).runner
        _LOG.warning("dry run: the pipeline was translated for %s; no job was run or submitted", runner)
        return False
    _LOG.info("pipeline finished in %.1f s", time.monotonic() - started)
    return True


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


def report_outputs(output_dir: str, with_report: bool, class_names=None):
    """Reads the finished run's outputs once; writes report.html when asked and possible.

    Returns (summary, the most severe issues, report.html's path or None).
    """
    from beam_labelissues import report

    if with_report and not report.have_matplotlib():
        _LOG.warning("matplotlib is not installed: no report.html (pip install 'beam-labelissues[report]')")
        with_report = False
    if not with_report:
        summary = outputs.read_summary(output_dir)
        return summary, outputs.read_top_issues(output_dir, summary, _PRINTED_ISSUES), None
    data = report.ReportData.read(output_dir, class_names)
    return data.summary, data.issues.top_rows, report.write_report_page(data)


def report_main(argv: Sequence[str]) -> int:
    args = build_report_parser().parse_args(argv)
    try:
        names = None if args.class_names is None else load_class_names(args.class_names)
        _, _, path = report_outputs(args.output_dir, True, names)
    except (LabelIssuesError, ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if path is None:
        return 1
    print(path)
    return 0


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
    args, beam_args = parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.quiet:
        logging.getLogger("apache_beam").setLevel(logging.WARNING)
    for handler in logging.getLogger().handlers:
        handler.addFilter(_DropWorkerTracebacksOfInputErrors())
    try:
        if not run_pipeline(args, beam_args, source_wrapper):
            print("Dry run: the pipeline was built and translated; nothing was run.")
            return 0
        summary, top, report_path = report_outputs(args.output, not args.no_report)
        print_summary(args.output, summary, top, human_review_path(args), report_path)
    except LabelIssuesError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if summary.num_examples == 0:
        _LOG.warning("the input has no valid examples: wrote an empty label_issues file")
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
