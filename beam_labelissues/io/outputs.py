"""The output directory as one type: its file names, ``Summary``, the writer and the readers.

Layout (a contract other tools read):

- ``label_issues-RRRRR-of-NNNNN.parquet``: the ranked issues, one file per score range
  (at least one, even when empty; ``rank`` is global);
- ``label_quality_scores-SSSSS-of-NNNNN.parquet``: every example, with ``with_scores``;
- ``invalid_records-SSSSS-of-NNNNN.jsonl``: the records left out, with ``on_invalid='skip'``;
- the dataset's health, in every run, computed from the confident joint with the thresholds
  of ``cleanlab.filter`` (a class no row is labelled with gets 2, so no row counts as truly
  in it), each one file ``NAME-00000-of-00001.parquet`` (schemas in tables.py; with class
  names, name columns are added after the index columns):

  - ``confident_joint``: ``given_label``, ``likely_true_label``, ``count`` (int64): the
    non-zero cells of the calibrated confident joint, by (given, likely true)
    (``cleanlab.count.compute_confident_joint(calibrate=True)``);
  - ``class_health``: ``class_index``, ``label_issues``, ``inverse_label_issues`` (int64),
    ``label_noise``, ``inverse_label_noise``, ``label_quality_score`` (float64), one row per
    class by ``label_quality_score`` ascending, ties by class index
    (``cleanlab.dataset.rank_classes_by_label_quality``);
  - ``overlapping_classes``: ``class_index_a`` < ``class_index_b``,
    ``num_overlapping_examples`` (int64), ``joint_probability`` (float64), the pairs with a
    non-zero joint probability, by it descending, ties by (a, b)
    (``cleanlab.dataset.find_overlapping_classes``);
  - ``noise_matrices`` only with more than 100 classes: ``given_label``, ``true_label``,
    ``noise_rate`` = P(given | true), ``inverse_noise_rate`` = P(true | given), the cells
    where either is non-zero (``cleanlab.count.estimate_py_and_noise_matrices_from_probabilities``);
    up to 100 classes both K x K matrices are in summary.json instead;

- ``report.html``: the report, written by the command line after the pipeline;
- ``label_issues.csv``, ``label_issues_labelstudio.json`` (+ its labeling config):
  the issues exported for a relabelling round (``--export``), written by the
  command line after the pipeline and listed in summary.json's ``export_files``;
- ``summary.json``: the manifest. It lists every other file of the run and is
  written after them, through a temporary name and a rename, so its presence
  means the run finished.

The command line never writes these into the output directory directly: a run
writes them into its own staging directory and publishes them when it has
finished (``beam_labelissues.io.output_dir`` states and implements the rule).
The only files of an output directory this package ever deletes or replaces are
those a ``summary.json`` of its own lists; paths are never treated as globs
(``beam_labelissues.io.paths``). The writers here use exact paths only, which is
also why they do not use Beam's file sinks: those read their own prefix as a glob.

Everything goes through Beam's ``FileSystems``: local paths, gs:// and s3:// alike.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import time
import uuid
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems
from apache_beam.transforms.window import GlobalWindows

from beam_labelissues import tables
from beam_labelissues._version import __version__
from beam_labelissues.io import paths

SUMMARY_FILE = "summary.json"
REPORT_FILE = "report.html"
ISSUES_PREFIX = "label_issues"
SCORES_PREFIX = "label_quality_scores"
INVALID_PREFIX = "invalid_records"
CONFIDENT_JOINT_PREFIX = "confident_joint"
CLASS_HEALTH_PREFIX = "class_health"
OVERLAPPING_CLASSES_PREFIX = "overlapping_classes"
NOISE_MATRICES_PREFIX = "noise_matrices"
# The health files, in the order the summary lists them.
HEALTH_PREFIXES = (CONFIDENT_JOINT_PREFIX, CLASS_HEALTH_PREFIX, OVERLAPPING_CLASSES_PREFIX, NOISE_MATRICES_PREFIX)
# Rows per Parquet row group when writing the issues.
_ISSUES_ROW_GROUP = 1 << 20
# The issues exported for a relabelling round (``beam_labelissues.io.exports``).
CSV_EXPORT_FILE = "label_issues.csv"
LABELSTUDIO_EXPORT_FILE = "label_issues_labelstudio.json"
LABELSTUDIO_CONFIG_FILE = "label_issues_labelstudio_config.xml"
EXPORT_FILES = (CSV_EXPORT_FILE, LABELSTUDIO_EXPORT_FILE, LABELSTUDIO_CONFIG_FILE)
# Summary fields that say how a run was made (version, settings, when, how long): they
# differ between runs of the same data, so comparisons of results leave them out.
RUN_RECORD_FIELDS = ("tool_version", "options", "started_at", "run_seconds")
_LOG = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Summary:
    """The content of ``summary.json``: what the run found and with which settings.

    ``FindLabelIssues`` produces it without the file lists; the writer adds them.

    The batched method (no ``filter_by``): ``num_issues_estimated`` is
    ``LabelInspector.get_num_issues``, the n lowest scores the issues are taken from. With a
    ``filter_by`` (cleanlab's ``filter.find_label_issues``): it is the number of rows the
    method selects before the rows where the model agrees with the label are dropped
    (``low_*``: n, the confident-learning count; ``confident_learning``: the rows counted off
    the diagonal of the confident joint; ``predicted_neq_given``: argmax != label; pruning
    methods: the distinct rows their cells or classes take); ``num_label_issues`` counts what
    is left. ``frac_noise``, ``num_to_remove_per_class`` and ``min_examples_per_class`` are
    cleanlab's arguments (used only by the pruning methods), ``calibration_tie_break`` how the
    calibrated joint's rounding broke ties (see ``LabelIssuesOptions``).

    Health (every run; None in summaries of older versions and with no valid example):
    ``overall_label_health_score`` (``dataset.overall_label_health_score``: 1 - n / N, n =
    ``num_confident_learning_issues``, which is ``count.num_label_issues``), how many rows
    of the calibrated joint met a rounding tie (``calibration_rounding_ties``: where
    ``numpy`` and ``class_index`` tie breaks may differ), and the latent estimates of
    ``count.estimate_py_and_noise_matrices_from_probabilities``: ``py`` (K), and up to 100
    classes ``noise_matrix`` (P(given = i | true = j) at [i][j]) and ``inverse_noise_matrix``
    (P(true = i | given = j) at [i][j]); above that they are in ``noise_matrices_files``.
    """

    num_examples: int
    num_classes: int
    num_label_issues: int
    num_issues_estimated: int
    confident_thresholds: List[float]
    examples_per_class: List[int]
    method: str
    adjust_pred_probs: bool
    estimation_method: str
    tolerance: float
    on_invalid: str
    num_invalid_records: int
    issue_score_range: Optional[List[float]]
    score_histogram: Dict[str, List[float]]
    class_names: Optional[List[str]] = None
    input: Optional[str] = None
    label_issues_files: List[str] = dataclasses.field(default_factory=list)
    label_quality_scores_files: List[str] = dataclasses.field(default_factory=list)
    invalid_records_files: List[str] = dataclasses.field(default_factory=list)
    threshold_sample_fraction: float = 1.0
    # Files the command line adds to the run before publishing it (report.html).
    report_files: List[str] = dataclasses.field(default_factory=list)
    row_sum_tolerance: Optional[float] = None
    # How the run was made: the package version, every setting (the transform's
    # options and those of the command line), when the pipeline was built (UTC,
    # ISO 8601) and the seconds from then until summary.json was written. Older
    # summaries lack them.
    tool_version: Optional[str] = None
    options: Optional[Dict[str, Any]] = None
    started_at: Optional[str] = None
    run_seconds: Optional[float] = None
    # Files the command line wrote after the pipeline (``--export``).
    export_files: List[str] = dataclasses.field(default_factory=list)
    filter_by: Optional[str] = None
    frac_noise: float = 1.0
    num_to_remove_per_class: Optional[List[int]] = None
    min_examples_per_class: int = 1
    calibration_tie_break: str = "numpy"
    overall_label_health_score: Optional[float] = None
    num_confident_learning_issues: Optional[int] = None
    calibration_rounding_ties: Optional[int] = None
    py: Optional[List[float]] = None
    noise_matrix: Optional[List[List[float]]] = None
    inverse_noise_matrix: Optional[List[List[float]]] = None
    confident_joint_files: List[str] = dataclasses.field(default_factory=list)
    class_health_files: List[str] = dataclasses.field(default_factory=list)
    overlapping_classes_files: List[str] = dataclasses.field(default_factory=list)
    noise_matrices_files: List[str] = dataclasses.field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str, source: str = "summary.json") -> "Summary":
        """Parses ``summary.json``; keys it does not know (from a newer version) are ignored."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"{source} is not valid JSON: {error}") from error
        if not isinstance(data, dict):
            raise ValueError(f"{source} does not hold a JSON object")
        known = {field.name: field for field in dataclasses.fields(cls)}
        missing = [
            name for name, field in known.items()
            if name not in data
            and field.default is dataclasses.MISSING
            and field.default_factory is dataclasses.MISSING
        ]
        if missing:
            raise ValueError(f"{source} lacks the key(s) {', '.join(missing)}: not a summary of this tool")
        return cls(**{name: value for name, value in data.items() if name in known})

    @property
    def output_files(self) -> List[str]:
        """Names of the data files the run wrote, in the order a reader lists them."""
        return (self.label_issues_files + self.label_quality_scores_files + self.invalid_records_files
                + self.health_files + self.export_files)

    @property
    def health_files(self) -> List[str]:
        """The health files, in ``HEALTH_PREFIXES`` order."""
        return (self.confident_joint_files + self.class_health_files + self.overlapping_classes_files
                + self.noise_matrices_files)

    def files_of(self, prefix: str) -> List[str]:
        """The files of one output (a ``*_PREFIX``)."""
        return {
            ISSUES_PREFIX: self.label_issues_files,
            SCORES_PREFIX: self.label_quality_scores_files,
            INVALID_PREFIX: self.invalid_records_files,
            CONFIDENT_JOINT_PREFIX: self.confident_joint_files,
            CLASS_HEALTH_PREFIX: self.class_health_files,
            OVERLAPPING_CLASSES_PREFIX: self.overlapping_classes_files,
            NOISE_MATRICES_PREFIX: self.noise_matrices_files,
        }[prefix]

    @property
    def files_of_the_run(self) -> List[str]:
        """Every file this summary says its run wrote, summary.json excluded."""
        return self.output_files + self.report_files


def output_path(output_dir: str, name: str) -> str:
    return FileSystems.join(output_dir, name)


def issues_file_name(range_index: int, num_ranges: int) -> str:
    return f"{ISSUES_PREFIX}-{range_index:05d}-of-{num_ranges:05d}.parquet"


def health_file_name(prefix: str) -> str:
    """The one file of a health output, such as ``confident_joint-00000-of-00001.parquet``."""
    return f"{prefix}-00000-of-00001.parquet"


def _basename(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]


# --- writing ------------------------------------------------------------------------


def write_then_rename(output_dir: str, name: str, mime_type: str, write: Callable[[Any], Any]) -> str:
    """Writes ``name`` under a hidden temporary name, then renames it into place.

    A reader never sees a half-written output under its final name.
    """
    final = output_path(output_dir, name)
    temporary = output_path(output_dir, f".{name}.tmp")
    with FileSystems.create(temporary, mime_type=mime_type) as handle:
        write(handle)
    if not paths.is_local(final):  # a local rename replaces the file at once
        paths.delete_file(final)
    paths.rename(temporary, final)
    return final


def record_report(output_dir: str, summary: Optional[Summary] = None) -> Summary:
    """Adds report.html to the files summary.json lists (rewritten through a temporary name)."""
    summary = summary if summary is not None else read_summary(output_dir)
    if REPORT_FILE not in summary.report_files:
        summary = dataclasses.replace(summary, report_files=summary.report_files + [REPORT_FILE])
        text = summary.to_json().encode("utf-8")
        write_then_rename(output_dir, SUMMARY_FILE, "application/json", lambda handle: handle.write(text))
    return summary


def _write_issues(ranked, output_dir: str, uri_template: Optional[str] = None) -> str:
    """Writes one score range's ranked issues (a ``RankedIssues``) to its Parquet file.

    Each range arrives as one table already in rank order, so a plain write beats
    a sharded sink: no shuffle of the table, no extra stages.
    """
    table = tables.add_uri_column(ranked.table, uri_template)

    def write(handle):
        with pq.ParquetWriter(handle, table.schema) as writer:
            writer.write_table(table, row_group_size=_ISSUES_ROW_GROUP)

    return write_then_rename(
        output_dir, issues_file_name(ranked.range_index, ranked.num_ranges), "application/x-parquet", write
    )


class _WritePartPerBundle(beam.DoFn):
    """Writes every element of a bundle into one part file of ``output_dir``; yields its path.

    Parts have hidden temporary names; ``_write_summary`` renames those of the
    bundles that committed to numbered shard names. A retried bundle leaves its
    failed attempt's part behind under a temporary name, never listed anywhere.
    """

    def __init__(self, output_dir: str, prefix: str, suffix: str, schema: Optional[pa.Schema] = None):
        self._output_dir = output_dir
        self._prefix = prefix
        self._suffix = suffix
        self._schema = schema

    def start_bundle(self):
        self._path = self._handle = self._writer = None

    def _open(self):
        self._path = output_path(self._output_dir, f".{self._prefix}-part-{uuid.uuid4().hex}{self._suffix}.tmp")
        self._handle = FileSystems.create(self._path, mime_type="application/octet-stream")
        if self._schema is not None:
            self._writer = pq.ParquetWriter(self._handle, self._schema)

    def process(self, element):
        if self._handle is None:
            self._open()
        if self._writer is not None:
            self._writer.write_table(element)
        else:
            self._handle.write(element.encode("utf-8") + b"\n")

    def finish_bundle(self):
        if self._handle is None:
            return
        if self._writer is not None:
            self._writer.close()
        self._handle.close()
        yield GlobalWindows.windowed_value(self._path)


def shard_name(prefix: str, index: int, count: int, suffix: str) -> str:
    return f"{prefix}-{index:05d}-of-{count:05d}{suffix}"


def _name_parts(output_dir: str, parts: Sequence[str], prefix: str, suffix: str) -> List[str]:
    """Renames the committed parts to ``prefix-SSSSS-of-NNNNN suffix``; returns the names.

    Idempotent: a part already renamed by an earlier attempt of this step is skipped.
    """
    parts = sorted(set(parts))
    names = [shard_name(prefix, i, len(parts), suffix) for i in range(len(parts))]
    for part, name in zip(parts, names):
        final = output_path(output_dir, name)
        if paths.exists(part):
            paths.rename(part, final)
        elif not paths.exists(final):
            raise FileNotFoundError(f"{part}: a written part of the output is missing")
    return names


def _write_health_tables(output_dir: str, health_tables: Sequence[Sequence[pa.Table]]) -> List[str]:
    """Writes the health tables, one file each (small: at most a cell per class pair), in
    ``HEALTH_PREFIXES`` order; an output with no table (no example, or no noise-matrices
    file) is skipped."""
    written = []
    for prefix, tables_of in zip(HEALTH_PREFIXES, health_tables):
        for table in tables_of:
            written.append(write_then_rename(output_dir, health_file_name(prefix), "application/x-parquet",
                                             lambda handle, table=table: pq.write_table(table, handle)))
    return written


def _write_summary(
    summary: Summary,
    output_dir: str,
    issue_files: Sequence[str],
    score_parts: Sequence[str],
    invalid_parts: Sequence[str],
    empty_issues: pa.Table,
    run_record: Optional[Dict[str, Any]] = None,
    *health_tables: Sequence[pa.Table],
) -> str:
    # The health tables are written here, after every data file: a run that fails in any
    # pass leaves none of them (they are known after the second read).
    health_files = _write_health_tables(output_dir, health_tables)
    if not issue_files:  # no valid example reached the ranking: still one file, empty
        with_names = empty_issues
        issue_files = [
            write_then_rename(
                output_dir,
                issues_file_name(0, 1),
                "application/x-parquet",
                lambda handle: pq.write_table(with_names, handle),
            )
        ]
    summary = dataclasses.replace(
        summary,
        label_issues_files=sorted(_basename(f) for f in issue_files),
        label_quality_scores_files=_name_parts(output_dir, score_parts, SCORES_PREFIX, ".parquet"),
        invalid_records_files=_name_parts(output_dir, invalid_parts, INVALID_PREFIX, ".jsonl"),
        **{f"{prefix}_files": sorted(_basename(f) for f in health_files if _basename(f).startswith(prefix + "-"))
           for prefix in HEALTH_PREFIXES},
        **_finished_run(run_record),
    )
    return write_then_rename(
        output_dir, SUMMARY_FILE, "application/json", lambda handle: handle.write(summary.to_json().encode("utf-8"))
    )


class WriteLabelIssues(beam.PTransform):
    """Writes a ``LabelIssuesResult`` to ``output_dir``; the output is summary.json's path.

    Apply it to the result of ``FindLabelIssues``::

        result = pipeline | FindLabelIssues(options, source=source)
        result | WriteLabelIssues("gs://bucket/label_issues")

    The result carries the id type and the class names, so only the path is needed.
    It writes straight into ``output_dir``; the command line points it at the
    staging directory of an ``io.output_dir.OutputDirectory``, which publishes the
    files once the run finished.

    Args:
      output_dir: the directory to write into (local, gs://, s3://).
      run_options: settings beyond the transform's (a command line's), recorded
        with them in summary.json's ``options``.
    """

    def __init__(self, output_dir: str, label: Optional[str] = None, *,
                 run_options: Optional[Dict[str, Any]] = None):
        super().__init__(label)
        self._output_dir = output_dir
        self._run_options = dict(run_options or {})

    def _extract_input_pvalues(self, result):
        # The input is a LabelIssuesResult, not a PCollection: name its PCollections.
        pcollections = [p for p in (result.issues, result.scores, result.summary, result.invalid_records) if p is not None]
        return result, pcollections + (result.health.pcollections() if result.health is not None else [])

    def expand(self, result):
        output_dir = self._output_dir
        uri_template = getattr(result.options, "example_uri_template", None)
        issue_files = result.issues | "WriteLabelIssues" >> beam.Map(_write_issues, output_dir, uri_template)
        score_parts: Any = []
        if result.scores is not None:
            schema = tables.label_quality_scores_schema(result.id_type, result.class_names is not None)
            scores = result.scores
            if uri_template is not None:
                schema = tables.with_uri_field(schema)
                scores = scores | "AddUriToScores" >> beam.Map(tables.add_uri_column, uri_template)
            score_parts = beam.pvalue.AsList(
                scores
                | "WriteLabelQualityScores" >> beam.ParDo(
                    _WritePartPerBundle(output_dir, SCORES_PREFIX, ".parquet", schema)
                )
            )
        invalid_parts: Any = []
        if result.invalid_records is not None:
            invalid_parts = beam.pvalue.AsList(
                result.invalid_records
                | "InvalidToJson" >> beam.Map(lambda record: json.dumps(record, sort_keys=True))
                | "WriteInvalidRecords" >> beam.ParDo(_WritePartPerBundle(output_dir, INVALID_PREFIX, ".jsonl"))
            )
        health = result.health
        health_tables = [] if health is None else [
            beam.pvalue.AsList(tables_of) if tables_of is not None else []
            for tables_of in (health.confident_joint, health.class_health, health.overlapping_classes,
                              health.noise_matrices)
        ]
        return result.summary | "WriteSummary" >> beam.Map(
            _write_summary,
            output_dir,
            beam.pvalue.AsList(issue_files),
            score_parts,
            invalid_parts,
            tables.add_uri_column(tables.empty_label_issues_table(result.id_type, result.class_names), uri_template),
            _run_record(result.options, self._run_options),
            *health_tables,
        )


# --- how the run was made (summary.json's tool_version, options, started_at, run_seconds) ----


def _run_record(options: Any, run_options: Dict[str, Any]) -> Dict[str, Any]:
    """What the summary records of the run, taken when the pipeline is built."""
    settings = dataclasses.asdict(options) if dataclasses.is_dataclass(options) else {}
    settings.update(run_options)
    return {
        "tool_version": __version__,
        "options": json.loads(json.dumps(settings, default=str)),
        "started_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "started": time.time(),
    }


def _finished_run(run_record: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """The Summary fields of the run record, with the seconds it took so far."""
    if run_record is None:
        return {}
    fields = {key: value for key, value in run_record.items() if key != "started"}
    fields["run_seconds"] = round(max(time.time() - run_record["started"], 0.0), 3)
    return fields


def record_export_files(output_dir: str, summary: Summary, names: Sequence[str]) -> Summary:
    """Adds files the command line wrote after the run to summary.json's ``export_files``.

    summary.json is replaced through a temporary name, as when it was first written.
    """
    updated = dataclasses.replace(summary, export_files=sorted(set(summary.export_files) | set(names)))
    write_then_rename(
        output_dir, SUMMARY_FILE, "application/json", lambda handle: handle.write(updated.to_json().encode("utf-8"))
    )
    return updated


# --- reading ------------------------------------------------------------------------


def read_summary(output_dir: str) -> Summary:
    """The summary of a finished run in ``output_dir``; an error if there is none."""
    path = output_path(output_dir, SUMMARY_FILE)
    if not FileSystems.exists(path):
        raise FileNotFoundError(f"{output_dir} holds no {SUMMARY_FILE}: not the output of a finished run")
    with FileSystems.open(path) as handle:
        return Summary.from_json(handle.read().decode("utf-8"), source=path)


def iter_label_issue_batches(
    output_dir: str, summary: Summary, columns: Optional[Sequence[str]] = None, batch_size: int = 65536
) -> Iterator[pa.RecordBatch]:
    """The issues as record batches, in rank order (files are numbered by score range)."""
    for name in sorted(summary.label_issues_files):
        with FileSystems.open(output_path(output_dir, name)) as handle:
            parquet = pq.ParquetFile(handle)
            present = None if columns is None else [c for c in columns if c in parquet.schema_arrow.names]
            yield from parquet.iter_batches(batch_size=batch_size, columns=present)


def read_label_issues(output_dir: str, summary: Summary, columns: Optional[Sequence[str]] = None) -> pa.Table:
    """Every issue as one table, in rank order."""
    parts = []
    for name in sorted(summary.label_issues_files):
        with FileSystems.open(output_path(output_dir, name)) as handle:
            parts.append(pq.read_table(handle, columns=columns))
    return pa.concat_tables(parts)


def read_top_issues(output_dir: str, summary: Summary, count: int) -> List[Dict[str, Any]]:
    """The ``count`` most severe issues as dicts; reads no further than it needs."""
    rows: List[Dict[str, Any]] = []
    for batch in iter_label_issue_batches(output_dir, summary, batch_size=max(count, 1)):
        rows.extend(batch.to_pylist()[: count - len(rows)])
        if len(rows) >= count:
            break
    return rows


def read_label_quality_scores(output_dir: str, summary: Summary) -> Optional[pa.Table]:
    """Every example's score (written with ``with_scores``), or None."""
    if not summary.label_quality_scores_files:
        return None
    parts = []
    for name in summary.label_quality_scores_files:
        with FileSystems.open(output_path(output_dir, name)) as handle:
            parts.append(pq.read_table(handle))
    return pa.concat_tables(parts)


def read_health_table(output_dir: str, summary: Summary, prefix: str) -> Optional[pa.Table]:
    """One health table (``CONFIDENT_JOINT_PREFIX``, ``CLASS_HEALTH_PREFIX``,
    ``OVERLAPPING_CLASSES_PREFIX`` or ``NOISE_MATRICES_PREFIX``), or None when the run did not
    write it (an older version; noise matrices up to 100 classes are in the summary)."""
    names = summary.files_of(prefix)
    if not names:
        return None
    parts = []
    for name in names:
        with FileSystems.open(output_path(output_dir, name)) as handle:
            parts.append(pq.read_table(handle))
    return pa.concat_tables(parts)


def read_invalid_records(output_dir: str, summary: Summary) -> List[Dict[str, Any]]:
    """The records left out with ``on_invalid='skip'``, as dicts."""
    records = []
    for name in summary.invalid_records_files:
        with FileSystems.open(output_path(output_dir, name)) as handle:
            records.extend(json.loads(line) for line in handle.read().decode("utf-8").splitlines() if line.strip())
    return records
