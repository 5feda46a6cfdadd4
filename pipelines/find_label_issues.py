#!/usr/bin/env python
"""Finds label issues in a classification dataset with Apache Beam.

Run with no arguments to find the label issues of the bundled demo data (the real
MNIST test-set predictions of the "pervasive label errors" study). Every Apache
Beam pipeline option passes through (--runner, --direct_num_workers, ...).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from typing import List, Optional, Sequence

import apache_beam as beam
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from beam_labelissues import demo, kernels
from beam_labelissues.io import outputs
from beam_labelissues.io.npy import InputFileError, NpyPair, ReadNpyExamples, describe
from beam_labelissues.transforms import (
    DEFAULT_TOLERANCE,
    ON_INVALID_CHOICES,
    FindLabelIssues,
    InvalidRecordError,
)

DEFAULT_OUTPUT = "label_issues_output"
# The in-process runner: "DirectRunner" would first try to download the Prism runner.
DEFAULT_RUNNER = "FnApiRunner"
_LOG = logging.getLogger("find_label_issues")


class UsageError(Exception):
    """A problem with the command line or the inputs, reported without a traceback."""


def build_arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="find_label_issues.py",
        description=(
            "Find label issues (examples whose given label is likely wrong) with confident "
            "learning, as cleanlab's find_label_issues_batched does, on any Beam runner. "
            "With no input options it runs on the bundled MNIST demo data. Any option not "
            "listed here is passed to Apache Beam as a pipeline option (for example --runner, "
            f"--direct_num_workers, --direct_running_mode, --temp_location); the default runner "
            f"is {DEFAULT_RUNNER}, Beam's in-process runner."
        ),
        epilog=(
            "Outputs in --output: label_issues-*.parquet (rank, id, given_label, predicted_label, "
            "label_quality; rank 0 is the most severe), summary.json (written last: its presence "
            "means the run finished), label_quality_scores-*.parquet with --write_scores, and "
            "invalid_records-*.jsonl with --on_invalid skip, report.html (plots, unless "
            "--no_report). Outputs of an earlier run in the same directory are removed first. "
            "'find_label_issues.py report OUTDIR' rebuilds report.html from an earlier run."
        ),
    )
    inputs = parser.add_argument_group("input (.npy files, as cleanlab's labels_file / pred_probs_file)")
    inputs.add_argument(
        "--labels_file",
        help="A .npy file of given labels: 1-D, any integer dtype, values in [0, K). "
        "The example id is the row index. Local path, gs:// or s3://.",
    )
    inputs.add_argument(
        "--pred_probs_file",
        help="A .npy file of predicted probabilities, N x K, float16/32/64, same N as --labels_file "
        "(ideally out-of-sample, e.g. cross-validated).",
    )
    settings = parser.add_argument_group("confident learning (named as in cleanlab)")
    settings.add_argument(
        "--method",
        choices=kernels.METHODS,
        default="self_confidence",
        help="Label quality score: self_confidence = probability of the given label; "
        "normalized_margin = (p_label - max other p + 1) / 2; confidence_weighted_entropy = "
        "normalized entropy over self-confidence, rescaled. Default: %(default)s.",
    )
    settings.add_argument(
        "--adjust_pred_probs",
        action="store_true",
        help="Subtract each class's confident threshold from pred_probs and renormalise before "
        "scoring, to account for class imbalance (not with confidence_weighted_entropy).",
    )
    settings.add_argument(
        "--estimation_method",
        choices=kernels.ESTIMATION_METHODS,
        default="off_diagonal",
        help="How to estimate the number of issues n: off_diagonal counts examples whose "
        "confident prediction differs from the label; off_diagonal_calibrated rescales that "
        "count per class by the class's size. Default: %(default)s.",
    )
    settings.add_argument(
        "--tolerance",
        type=float,
        default=DEFAULT_TOLERANCE,
        help="Probabilities within this distance of [0, 1] are valid and used as given (real "
        "predictions carry rounding such as 1.00001); further out, the record is invalid. "
        "confidence_weighted_entropy clips them into [0, 1]. Default: %(default)s.",
    )
    settings.add_argument(
        "--on_invalid",
        choices=ON_INVALID_CHOICES,
        default="fail",
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
    run.add_argument(
        "--write_scores",
        action="store_true",
        help="Also write label_quality_scores-*.parquet: id, given_label, predicted_label, "
        "label_quality and is_label_issue for every example.",
    )
    run.add_argument(
        "--batch_size",
        type=int,
        default=None,
        help="Rows per batch. Default: as many rows as fit in about "
        "16 MiB of pred_probs. Results never depend on it.",
    )
    run.add_argument(
        "--human_review",
        default=None,
        help="A *_mturk.json human review of flagged examples (id = row index): the summary then "
        "says how many flagged examples the reviewers did not uphold. Default: the bundled MNIST "
        "review when running on the demo data.",
    )
    run.add_argument(
        "--class_names",
        default=None,
        help="A file naming the classes, one per line (line k names class k) or a JSON list. "
        "Names then appear in the printed summary, the report and as given_label_name / "
        "predicted_label_name columns of label_issues.",
    )
    run.add_argument(
        "--no_report",
        action="store_true",
        help="Do not write report.html (an HTML summary with plots; needs matplotlib, "
        "pip install 'beam-labelissues[report]').",
    )
    run.add_argument(
        "--quiet", action="store_true", help="Print only warnings and the final summary."
    )
    return parser


def build_report_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="find_label_issues.py report",
        description="Rebuild report.html from the outputs of an earlier run.",
    )
    parser.add_argument("output_dir", help="The output directory of a finished run (holds summary.json).")
    parser.add_argument(
        "--class_names", default=None, help="Class names file (one per line or a JSON list)."
    )
    return parser


def parse_args(argv: Sequence[str]):
    """Splits the command line into our options and Beam's pipeline options."""
    parser = build_arg_parser()
    args, beam_args = parser.parse_known_args(argv)
    unknown = [a for a in beam_args if a.startswith("--") and not _is_beam_option(a)]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    return args, beam_args


def _is_beam_option(arg: str) -> bool:
    name = arg[2:].split("=", 1)[0]
    known = set()
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


def open_inputs(args) -> NpyPair:
    if args.labels_file is None and args.pred_probs_file is None:
        args.labels_file, args.pred_probs_file = demo.DEMO_LABELS, demo.DEMO_PRED_PROBS
        if args.human_review is None:
            args.human_review = demo.DEMO_HUMAN_REVIEW
        _LOG.info("no input given: using the bundled MNIST demo data")
    elif args.labels_file is None or args.pred_probs_file is None:
        raise UsageError("give both --labels_file and --pred_probs_file")
    try:
        return NpyPair.open(args.labels_file, args.pred_probs_file)
    except InputFileError as error:
        raise UsageError(str(error)) from error


def load_names(path: Optional[str], num_classes: Optional[int]) -> Optional[List[str]]:
    if path is None:
        return None
    from beam_labelissues.report import load_class_names

    try:
        names = load_class_names(path)
    except (OSError, ValueError) as error:
        raise UsageError(str(error)) from error
    if num_classes is not None and len(names) != num_classes:
        raise UsageError(f"{path} names {len(names)} classes, but the data has {num_classes}")
    return names


def run_pipeline(args, beam_args: List[str]) -> dict:
    pair = open_inputs(args)
    class_names = load_names(args.class_names, pair.num_classes)
    source = ReadNpyExamples(pair, batch_size=args.batch_size)
    transform = FindLabelIssues(
        num_classes=pair.num_classes,
        method=args.method,
        adjust_pred_probs=args.adjust_pred_probs,
        estimation_method=args.estimation_method,
        tolerance=args.tolerance,
        on_invalid=args.on_invalid,
        with_scores=args.write_scores,
        source=source,
        class_names=class_names,
    )
    if not FileSystems.exists(args.output):
        FileSystems.mkdirs(args.output)
    outputs.remove_previous_outputs(args.output)
    _LOG.info("reading %s", describe(pair))
    started = time.monotonic()
    pipeline = beam.Pipeline(options=pipeline_options(beam_args))
    result = pipeline | "FindLabelIssues" >> transform
    outputs.write_outputs(
        result, args.output, class_names=class_names, input_description=describe(pair)
    )
    try:
        pipeline.run().wait_until_finish()
    except Exception as error:  # Beam wraps worker errors; surface ours plainly
        message = _our_error_message(error)
        if message is None:
            raise
        raise UsageError(message) from error
    _LOG.info("pipeline finished in %.1f s", time.monotonic() - started)
    return read_summary(args.output)


def _our_error_message(error: BaseException) -> Optional[str]:
    """Finds an InvalidRecordError or InputFileError inside a runner's wrapped exception."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, (InvalidRecordError, InputFileError)):
            return str(error)
        error = error.__cause__ or error.__context__
    text = str(error) if error is not None else ""
    for name in ("InvalidRecordError", "InputFileError"):
        marker = f"{name}: "
        if marker in text:
            message = text.split(marker, 1)[1].splitlines()[0]
            return message.split(" [while running", 1)[0].strip().strip("'\"")
    return None


def read_summary(output_dir: str) -> dict:
    with FileSystems.open(outputs.output_path(output_dir, outputs.SUMMARY_FILE)) as handle:
        return json.loads(handle.read().decode("utf-8"))


def read_top_issues(output_dir: str, summary: dict, count: int = 10):
    rows = []
    for name in summary["label_issues_files"]:
        with FileSystems.open(outputs.output_path(output_dir, name)) as handle:
            table = pq.read_table(handle)
        rows.extend(table.to_pylist())
    rows.sort(key=lambda row: row["rank"])
    return rows[:count] if count is not None else rows


def print_summary(args, summary: dict) -> None:
    out = sys.stdout
    n = summary["num_examples"]
    share = summary["num_label_issues"] / n if n else 0.0
    print(f"\nExamples read:        {n:,} ({summary['num_classes']} classes)", file=out)
    if summary["num_invalid_records"]:
        print(f"Invalid records:      {summary['num_invalid_records']:,} (left out)", file=out)
    thresholds = ", ".join(f"{t:.4f}" for t in summary["confident_thresholds"][:20])
    more = " ..." if summary["num_classes"] > 20 else ""
    print(f"Confident thresholds: [{thresholds}{more}]", file=out)
    print(f"Issues estimated:     {summary['num_issues_estimated']:,}", file=out)
    print(f"Label issues found:   {summary['num_label_issues']:,} ({share:.2%} of examples)", file=out)
    top = read_top_issues(args.output, summary, None if args.human_review else 10)
    if top:
        print("\nMost severe issues:", file=out)
        print(f"  {'rank':>4}  {'id':>10}  {'given':>14}  {'predicted':>14}  {'label_quality':>13}", file=out)
        names = summary.get("class_names")
        for row in top[:10]:
            given, predicted = row["given_label"], row["predicted_label"]
            if names:
                given, predicted = f"{names[given]} ({given})", f"{names[predicted]} ({predicted})"
            print(
                f"  {row['rank']:>4}  {row['id']!s:>10}  {given!s:>14}  "
                f"{predicted!s:>14}  {row['label_quality']:>13.6g}",
                file=out,
            )
    if args.human_review:
        review = demo.review_of_issues([row["id"] for row in top], demo.load_human_review(args.human_review))
        print(
            f"\nHuman review ({os.path.basename(args.human_review)}): {review['reviewed']} of the "
            f"{len(top)} flagged examples were reviewed; the reviewers did not uphold the given "
            f"label for {review['not_upheld']} of them.",
            file=out,
        )
    if n == 0:
        print("\nWARNING: the input has no valid examples; wrote empty outputs.", file=out)
    print(f"\nOutputs in {args.output}:", file=out)
    for name in summary["label_issues_files"] + summary.get("label_quality_scores_files", []) + summary.get(
        "invalid_records_files", []
    ):
        print(f"  {outputs.output_path(args.output, name)}", file=out)
    print(f"  {outputs.output_path(args.output, outputs.SUMMARY_FILE)}", file=out)
    if getattr(args, "report_path", None):
        print(f"  {args.report_path}", file=out)


def write_report(output_dir: str, class_names: Optional[List[str]] = None) -> Optional[str]:
    """Writes report.html where the launcher runs; skips it, with a warning, without matplotlib."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        _LOG.warning(
            "matplotlib is not installed: no report.html (pip install 'beam-labelissues[report]')"
        )
        return None
    from beam_labelissues.report import write_report as build

    return build(output_dir, class_names)


def report_main(argv: Sequence[str]) -> int:
    args = build_report_parser().parse_args(argv)
    try:
        names = load_names(args.class_names, None)
        if not FileSystems.exists(outputs.output_path(args.output_dir, outputs.SUMMARY_FILE)):
            raise UsageError(f"{args.output_dir} holds no summary.json: not the output of a finished run")
        path = write_report(args.output_dir, names)
    except (UsageError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if path is None:
        return 1
    print(path)
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
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
    try:
        summary = run_pipeline(args, beam_args)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if summary["num_examples"] == 0:
        _LOG.warning("the input has no valid examples: wrote an empty label_issues file")
    if not args.no_report:
        args.report_path = write_report(args.output, summary.get("class_names"))
    print_summary(args, summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
