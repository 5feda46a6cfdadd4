#!/usr/bin/env python
"""Finds label issues in a classification dataset with Apache Beam.

Run with no arguments to find the label issues of the bundled demo data (the real
MNIST test-set predictions of the "pervasive label errors" study). Every Apache
Beam pipeline option passes through (--runner, --direct_num_workers, ...).
"""

from __future__ import annotations

import argparse
import atexit
import dataclasses
import json
import logging
import os
import sys
import time
from typing import List, Optional, Sequence

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions, TestOptions

from beam_labelissues import demo, kernels
from beam_labelissues.io import outputs
from beam_labelissues.io.npy import InputFileError, NpyPair, ReadNpyExamples, describe
from beam_labelissues.io.parquet import ParquetDataset, ReadParquetExamples
from beam_labelissues.transforms import (
    DEFAULT_MAX_ISSUES_PER_WORKER,
    DEFAULT_TOLERANCE,
    ON_INVALID_CHOICES,
    FindLabelIssues,
    InvalidRecordError,
)

DEFAULT_OUTPUT = "label_issues_output"
# The in-process runner: "DirectRunner" would first try to download the Prism runner.
DEFAULT_RUNNER = "FnApiRunner"
DEFAULT_LABEL_COLUMN = "label"
DEFAULT_PRED_PROBS_COLUMN = "pred_probs"
# The number of classes reported for an empty Parquet input whose K nothing tells.
_UNKNOWN_NUM_CLASSES = 2
_LOG = logging.getLogger("find_label_issues")


class UsageError(Exception):
    """A problem with the command line or the inputs, reported without a traceback."""


def _flag_value(text: str) -> bool:
    value = text.strip().lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no", ""):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _add_flag(group, name: str, help_text: str) -> None:
    """A switch: ``--name`` alone, or ``--name=true|false`` as a Flex Template passes it."""
    group.add_argument(
        name, nargs="?", const=True, default=False, type=_flag_value, metavar="true|false", help=help_text
    )


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
    parquet = parser.add_argument_group("input (Parquet files; instead of the .npy files)")
    parquet.add_argument(
        "--input",
        help="Parquet files to read, a path or a glob such as 'gs://bucket/preds/*.parquet' "
        "(local, gs:// or s3://). Files are read in sorted-name order, row groups in parallel.",
    )
    parquet.add_argument(
        "--label_column",
        default=None,
        help=f"The column of given labels: any integer type, values in [0, K). Default: {DEFAULT_LABEL_COLUMN}.",
    )
    parquet.add_argument(
        "--pred_probs_column",
        default=None,
        help="The column of predicted probabilities: a list, large_list or fixed_size_list of "
        f"float16/32/64, one value per class. Default: {DEFAULT_PRED_PROBS_COLUMN}.",
    )
    parquet.add_argument(
        "--pred_probs_columns",
        default=None,
        help="Instead of --pred_probs_column: a glob over column names with one float column per "
        "class, such as 'p_*'. Class order follows the number each name ends with (p_2 before "
        "p_10); the numbers must be consecutive.",
    )
    parquet.add_argument(
        "--id_column",
        default=None,
        help="A column of example ids (any integer or string type), carried to the outputs "
        "unchanged. Default: the row index over the files in sorted-name order.",
    )
    parquet.add_argument(
        "--num_classes",
        type=int,
        default=None,
        help="The number of classes K. Default: the number of columns of pred_probs (.npy), "
        "else the fixed_size_list size, the number of --pred_probs_columns, or the length of "
        "the first row's list in the first file (Parquet).",
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
    _add_flag(
        settings,
        "--adjust_pred_probs",
        "Subtract each class's confident threshold from pred_probs and renormalise before "
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
    _add_flag(
        run,
        "--write_scores",
        "Also write label_quality_scores-*.parquet: id, given_label, predicted_label, "
        "label_quality and is_label_issue for every example.",
    )
    run.add_argument(
        "--batch_size",
        type=int,
        default=None,
        help="Rows per batch. Default: as many rows as fit in about "
        "4 MiB of pred_probs. Results never depend on it.",
    )
    run.add_argument(
        "--max_issues_per_worker",
        type=int,
        default=DEFAULT_MAX_ISSUES_PER_WORKER,
        help="The most issues one worker holds while ranking them (about 100 bytes each). "
        "More issues are split into score ranges ranked on separate workers, one "
        "label_issues file per range; results never depend on it. Default: %(default)s.",
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


# Options of a runner's Java job server that Python's option classes do not declare;
# Beam passes them on to the job server.
_JOB_SERVER_OPTIONS = {"flink_conf_dir"}


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


# Measured on 2 cores: in one process 10M x 10 (0.4 GB of pred_probs) takes 3.6 s and two
# worker processes 4.2 s (they start in about 1.5 s); 100M x 10 (4 GB) takes 17.7 s in one
# process and 14.4 s in two. Above this size the local runner gets a worker per core.
MULTI_PROCESS_FROM_BYTES = 1 << 30
_LOCAL_WORKER_OPTIONS = ("--runner", "--direct_num_workers", "--direct_running_mode")


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


@dataclasses.dataclass(frozen=True)
class Inputs:
    """What the command line's input options resolve to, checked before the pipeline starts."""

    source: beam.PTransform
    num_classes: int
    id_type: pa.DataType
    description: str
    num_rows: int
    pred_probs_bytes: int


_PARQUET_ONLY = ("label_column", "pred_probs_column", "pred_probs_columns", "id_column")


def open_inputs(args) -> Inputs:
    """Opens and checks the input files; every problem is a ``UsageError``."""
    npy_given = args.labels_file is not None or args.pred_probs_file is not None
    if args.input is not None and npy_given:
        raise UsageError("give either --input (Parquet) or --labels_file and --pred_probs_file (.npy), not both")
    if args.num_classes is not None and args.num_classes < 2:
        raise UsageError(f"--num_classes must be at least 2, got {args.num_classes}")
    try:
        if args.input is not None:
            inputs = _open_parquet(args)
        else:
            given = [f"--{name}" for name in _PARQUET_ONLY if getattr(args, name) is not None]
            if given:
                raise UsageError(f"{', '.join(given)} only apply to Parquet input (--input)")
            inputs = _open_npy(args)
    except InputFileError as error:
        raise UsageError(str(error)) from error
    if inputs.num_rows == 0:
        _LOG.warning(
            "the input has zero rows (%s); the run will write a summary with num_examples 0 and an "
            "empty label_issues file",
            inputs.description,
        )
    return inputs


def _open_npy(args) -> Inputs:
    if args.labels_file is None and args.pred_probs_file is None:
        args.labels_file, args.pred_probs_file = demo.DEMO_LABELS, demo.DEMO_PRED_PROBS
        if args.human_review is None:
            args.human_review = demo.DEMO_HUMAN_REVIEW
        _LOG.info("no input given: using the bundled MNIST demo data")
    elif args.labels_file is None or args.pred_probs_file is None:
        raise UsageError("give both --labels_file and --pred_probs_file")
    pair = NpyPair.open(args.labels_file, args.pred_probs_file)
    if args.num_classes is not None and args.num_classes != pair.num_classes:
        raise UsageError(
            f"--num_classes is {args.num_classes}, but {args.pred_probs_file} has {pair.num_classes} columns"
        )
    return Inputs(
        source=ReadNpyExamples(pair, batch_size=args.batch_size),
        num_classes=pair.num_classes,
        id_type=pa.int64(),
        description=describe(pair),
        num_rows=pair.num_examples,
        pred_probs_bytes=pair.num_examples * pair.num_classes * pair.pred_probs.dtype.itemsize,
    )


def _open_parquet(args) -> Inputs:
    if args.pred_probs_columns is not None and args.pred_probs_column is not None:
        raise UsageError("give either --pred_probs_column or --pred_probs_columns, not both")
    dataset = ParquetDataset.open(
        args.input,
        label_column=args.label_column or DEFAULT_LABEL_COLUMN,
        pred_probs_column=args.pred_probs_column or DEFAULT_PRED_PROBS_COLUMN,
        pred_probs_columns=args.pred_probs_columns,
        id_column=args.id_column,
        num_classes=args.num_classes,
    )
    num_classes = dataset.num_classes
    if num_classes is None:
        num_classes = _UNKNOWN_NUM_CLASSES
        _LOG.warning(
            "%s has zero rows and nothing tells the number of classes; the summary reports %d "
            "(pass --num_classes to set it)",
            args.input,
            num_classes,
        )
    if dataset.columns.pred_probs_columns:
        _LOG.info("class order of --pred_probs_columns: %s", ", ".join(dataset.columns.pred_probs_columns))
    return Inputs(
        source=ReadParquetExamples(dataset, num_classes=num_classes, batch_size=args.batch_size),
        num_classes=num_classes,
        id_type=dataset.id_type,
        description=dataset.describe(),
        num_rows=dataset.num_rows,
        pred_probs_bytes=dataset.num_rows * num_classes * dataset.prob_itemsize,
    )


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


def build_pipeline(args, beam_args: List[str]) -> beam.Pipeline:
    """Checks the inputs and builds the pipeline; touches no output file."""
    if args.batch_size is not None and args.batch_size < 1:
        raise UsageError(f"--batch_size must be at least 1, got {args.batch_size}")
    inputs = open_inputs(args)
    options = pipeline_options(beam_args + local_worker_args(beam_args, inputs.pred_probs_bytes))
    inputs.source.reshuffle = not runs_in_one_local_worker(options)
    class_names = load_names(args.class_names, inputs.num_classes)
    try:
        transform = FindLabelIssues(
            num_classes=inputs.num_classes,
            method=args.method,
            adjust_pred_probs=args.adjust_pred_probs,
            estimation_method=args.estimation_method,
            tolerance=args.tolerance,
            on_invalid=args.on_invalid,
            with_scores=args.write_scores,
            source=inputs.source,
            id_type=inputs.id_type,
            class_names=class_names,
            max_issues_per_worker=args.max_issues_per_worker,
        )
    except ValueError as error:
        raise UsageError(str(error)) from error
    _LOG.info("reading %s", inputs.description)
    pipeline = beam.Pipeline(options=options)
    result = pipeline | "FindLabelIssues" >> transform
    outputs.write_outputs(
        result,
        args.output,
        id_type=inputs.id_type,
        class_names=class_names,
        input_description=inputs.description,
    )
    return pipeline


def run_pipeline(args, beam_args: List[str]) -> Optional[dict]:
    """Runs the pipeline and returns summary.json, or None for a dry run (nothing submitted)."""
    pipeline = build_pipeline(args, beam_args)
    dry_run = pipeline.options.view_as(TestOptions).dry_run
    if not dry_run:
        if not FileSystems.exists(args.output):
            FileSystems.mkdirs(args.output)
        outputs.remove_previous_outputs(args.output)
    started = time.monotonic()
    try:
        pipeline.run().wait_until_finish()
    except Exception as error:  # Beam wraps worker errors; surface ours plainly
        message = _our_error_message(error)
        if message is None:
            raise
        raise UsageError(message) from error
    if dry_run:
        runner = pipeline.options.view_as(StandardOptions).runner
        _LOG.warning("dry run: the pipeline was translated for %s; no job was run or submitted", runner)
        return None
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


def read_issues_table(output_dir: str, summary: dict, columns=None):
    import pyarrow as pa

    tables = []
    for name in summary["label_issues_files"]:
        with FileSystems.open(outputs.output_path(output_dir, name)) as handle:
            tables.append(pq.read_table(handle, columns=columns))
    return pa.concat_tables(tables)


def read_top_issues(output_dir: str, summary: dict, count: int = 10):
    """The ``count`` most severe issues as dicts.

    Files are numbered by score range and each is in rank order, so the first
    rows of the first files are the most severe: nothing else is read.
    """
    rows: list = []
    for name in sorted(summary["label_issues_files"]):
        with FileSystems.open(outputs.output_path(output_dir, name)) as handle:
            parquet = pq.ParquetFile(handle)
            for batch in parquet.iter_batches(batch_size=count):
                rows.extend(batch.to_pylist()[: count - len(rows)])
                if len(rows) >= count:
                    return rows
    return rows


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
    top = read_top_issues(args.output, summary, 10)
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
        flagged = read_issues_table(args.output, summary, columns=["id"]).column("id").to_pylist()
        review = demo.review_of_issues(flagged, demo.load_human_review(args.human_review))
        print(
            f"\nHuman review ({os.path.basename(args.human_review)}): {review['reviewed']} of the "
            f"{len(flagged)} flagged examples were reviewed; the reviewers did not uphold the given "
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


class _DropWorkerTracebacksOfInputErrors(logging.Filter):
    """Beam's workers log the traceback of any failure before the runner re-raises it;
    for a bad input record the one-line message printed at the end says it all."""

    _MARKERS = ("InvalidRecordError", "InputFileError")

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if record.exc_info:
            text += logging.Formatter().formatException(record.exc_info)
        return not any(marker in text for marker in self._MARKERS)


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
    for handler in logging.getLogger().handlers:
        handler.addFilter(_DropWorkerTracebacksOfInputErrors())
    try:
        summary = run_pipeline(args, beam_args)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if summary is None:
        print("Dry run: the pipeline was built and translated; nothing was run.")
        return 0
    if summary["num_examples"] == 0:
        _LOG.warning("the input has no valid examples: wrote an empty label_issues file")
    if not args.no_report:
        args.report_path = write_report(args.output, summary.get("class_names"))
    print_summary(args, summary)
    return 0


if __name__ == "__main__":
    exit_code = main()
    # Tearing down an interpreter that loaded Beam takes about half a second, and
    # everything is written by now: run the exit handlers (Beam's stop job servers
    # such as Flink's), flush, and leave without the teardown.
    atexit._run_exitfuncs()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(exit_code)
